//! Keeping a restored dump to the tenant's place, whatever SQL it holds: `pg_restore` logs in as
//! a role of its own for this restore (no superuser, no role or database creation, no
//! row-level-security bypass) that may create objects only in the tenant's new database or its
//! one schema. What it made is then checked for objects that would run with their owner's
//! rights (`SECURITY DEFINER` functions, views without `security_invoker`, triggers on
//! fraiseql's own tables), handed to the admin, and the role dropped. Statements fraiseql runs
//! on the restored data afterwards run as the tenant (its own login), never as the admin.

use fraiseql_engine::connections::parse_url;
use fraiseql_engine::tenancy::TenantRecord;
use fraiseql_schema::{quote_ident, quote_literal};
use rand::distr::{Alphanumeric, SampleString};
use tokio_postgres::Client;

use crate::error::{archive_error, db, TransferError};
use crate::server::connect_to;

/// The role a restore runs as, and its password (for `pg_restore`'s environment).
pub(crate) struct RestoreRole {
    /// `fraiseql_restore_<random>`.
    pub name: String,
    /// Its password.
    pub password: String,
}

impl RestoreRole {
    /// The role of a restore into `rec`'s place, with a fresh password (nothing is created
    /// yet). Its name is the place's: a restore that was killed is cleaned up by the next one
    /// there (the tenant's lock keeps two from running at once).
    pub fn plan(rec: &TenantRecord) -> Self {
        Self {
            name: name_for(rec),
            password: Alphanumeric.sample_string(&mut rand::rng(), 32),
        }
    }
}

/// `fraiseql_restore_<16 hex digits of the SHA-256 of rec's database, schema and role>`.
pub(crate) fn name_for(rec: &TenantRecord) -> String {
    let place = format!("{}\u{0}{}\u{0}{}", rec.database, rec.schema, rec.role);
    let d = ring::digest::digest(&ring::digest::SHA256, place.as_bytes());
    format!("fraiseql_restore_{}", crate::archive::hex(&d.as_ref()[..8]))
}

/// Where the restore may create objects.
pub(crate) enum Confined<'a> {
    /// The tenant's new database (any schema in it).
    Database,
    /// This schema of the host database, created now and owned by the restore role.
    Schema(&'a str),
}

/// Creates the restore role on `rec`'s server, allowed to create objects only in `place`.
pub(crate) async fn create(
    rec: &TenantRecord,
    role: &RestoreRole,
    place: &Confined<'_>,
) -> Result<(), TransferError> {
    if let Some(left) = drop_role(rec, &role.name).await {
        return Err(TransferError::Refused(format!(
            "a restore role left by an earlier attempt could not be dropped: {left}"
        )));
    }
    let admin = connect_to(&rec.server, None).await?;
    let r = quote_ident(&role.name);
    let d = quote_ident(&rec.database);
    // It expires on its own should a killed restore leave it behind.
    let until: String = admin
        .query_one("SELECT (now() + interval '1 day')::text", &[])
        .await
        .map_err(db("creating the restore role"))?
        .get(0);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 2 PASSWORD {} VALID UNTIL {};
             GRANT CONNECT ON DATABASE {d} TO {r}",
            quote_literal(&role.password),
            quote_literal(&until),
        ))
        .await
        .map_err(db("creating the restore role"))?;
    let there = connect_to(&rec.server, Some(&rec.database)).await?;
    let grants = match place {
        Confined::Database => format!(
            "GRANT CREATE, TEMPORARY ON DATABASE {d} TO {r}; GRANT USAGE, CREATE ON SCHEMA public TO {r}"
        ),
        Confined::Schema(s) => format!("CREATE SCHEMA {} AUTHORIZATION {r}", quote_ident(s)),
    };
    there
        .batch_execute(&grants)
        .await
        .map_err(db("preparing the restore role"))
}

/// What in the restored place would run with its owner's rights (the admin's, once handed
/// over), or belongs to the restore role outside the place: each, named.
pub(crate) async fn owner_rights(
    there: &Client,
    role: &str,
    schemas: &[String],
) -> Result<Vec<String>, TransferError> {
    there
        .batch_execute("SET search_path = pg_catalog, pg_temp")
        .await
        .map_err(db("checking the restored objects"))?;
    let rows = there
        .query(
            "SELECT format('function %s is SECURITY DEFINER', p.oid::regprocedure)
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = ANY($1) AND p.prosecdef
             UNION ALL
             SELECT format('view %I.%I reads tables with its owner''s rights (set security_invoker = true on it)', n.nspname, c.relname)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = ANY($1) AND c.relkind = 'v'
                AND NOT EXISTS (SELECT 1 FROM unnest(c.reloptions) o WHERE o ~* '^security_invoker=(true|on|yes|1)$')
             UNION ALL
             SELECT format('trigger %I on %I.%I (a table of fraiseql''s own)', t.tgname, n.nspname, c.relname)
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = ANY($1) AND NOT t.tgisinternal AND c.relname LIKE 'fraiseql\\_%'
             UNION ALL
             SELECT format('%s %I outside the tenant''s place', CASE c.relkind WHEN 'r' THEN 'table' ELSE 'relation' END, c.relname)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $2) AND NOT n.nspname = ANY($1)
                AND n.nspname <> 'pg_toast'
             UNION ALL
             SELECT format('function %s outside the tenant''s place', p.oid::regprocedure)
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = $2) AND NOT n.nspname = ANY($1)
             ORDER BY 1",
            &[&schemas, &role],
        )
        .await
        .map_err(db("checking the restored objects"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The schemas the restore role made or owns in `there` (the restored place).
pub(crate) async fn schemas_of(
    there: &Client,
    role: &str,
    place: &Confined<'_>,
) -> Result<Vec<String>, TransferError> {
    let rows = there
        .query(
            "SELECT nspname::text FROM pg_namespace
              WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
                 OR (nspname = 'public' AND $2)
              ORDER BY 1",
            &[&role, &matches!(place, Confined::Database)],
        )
        .await
        .map_err(db("checking the restored objects"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Refuses the restored objects if any would run with their owner's rights; else hands them to
/// the admin (who owns a tenant's tables, as after `fraiseql migrate`).
pub(crate) async fn hand_over(
    rec: &TenantRecord,
    role: &RestoreRole,
    place: &Confined<'_>,
    archive: &std::path::Path,
) -> Result<(), TransferError> {
    let there = connect_to(&rec.server, Some(&rec.database)).await?;
    let schemas = schemas_of(&there, &role.name, place).await?;
    let found = owner_rights(&there, &role.name, &schemas).await?;
    if !found.is_empty() {
        return Err(archive_error(
            archive,
            format!(
                "its dump holds what would run with the admin's rights once restored ({}): refused, nothing was restored",
                found.join("; ")
            ),
        ));
    }
    there
        .batch_execute(&format!(
            "REASSIGN OWNED BY {r} TO CURRENT_USER; DROP OWNED BY {r}",
            r = quote_ident(&role.name)
        ))
        .await
        .map_err(db("handing the restored objects to the admin"))
}

/// Drops the restore role on `rec`'s server, with what it still owns or was granted in `rec`'s
/// database (if that exists). Returns what could not be dropped.
pub(crate) async fn drop_role(rec: &TenantRecord, name: &str) -> Option<String> {
    let dropped = async {
        let admin = connect_to(&rec.server, None).await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .map_err(db("dropping the restore role"))?
            .is_some();
        if !exists {
            return Ok(());
        }
        let r = quote_ident(name);
        if let Ok(there) = connect_to(&rec.server, Some(&rec.database)).await {
            there
                .batch_execute(&format!("DROP OWNED BY {r} CASCADE"))
                .await
                .map_err(db("dropping the restore role"))?;
        }
        admin
            .batch_execute(&format!("DROP ROLE {r}"))
            .await
            .map_err(db("dropping the restore role"))
    }
    .await;
    dropped.err().map(|e| format!("role {name}: {e}"))
}

/// A connection to `rec`'s database as the tenant: its login role, switched to its own role
/// when that is another (an authenticator, which on its own reads nothing), its schema first.
pub(crate) async fn as_tenant(rec: &TenantRecord) -> Result<Client, TransferError> {
    let target = parse_url("tenant", &rec.server)
        .map_err(|e| TransferError::Refused(e.to_string()))?
        .derive("tenant", |c| {
            c.dbname(&rec.database)
                .user(&rec.login_role)
                .password(rec.login_password.as_bytes());
        });
    let c = target
        .connect()
        .await
        .map_err(db("connecting as the tenant"))?;
    let mut setup = format!("SET search_path = {}, pg_catalog", quote_ident(&rec.schema));
    if rec.login_role != rec.role {
        setup = format!("SET ROLE {}; {setup}", quote_ident(&rec.role));
    }
    c.batch_execute(&setup)
        .await
        .map_err(db("connecting as the tenant"))?;
    Ok(c)
}
