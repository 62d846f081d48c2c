//! The SaaS example's Rust resolvers: the seed's `member_count`, `task_count` and
//! `create_project` written against fraiseql's resolver API.
//!
//! The schema declares the same fields in SQL (`@sql`, `@mutation`); `src/main.rs` serves the
//! example with these instead, and the tests check that both give the same answers.

use fraiseql::engine::resolvers::Transaction;
use fraiseql::{Args, Context, FieldBatch, ResolverError, Resolvers};
use serde_json::Value;

/// Every resolver of the example.
pub fn resolvers() -> Resolvers {
    Resolvers::new()
        .field("Organization", "memberCount", member_count)
        .field("Project", "taskCount", task_count)
        .mutation("createProject", create_project)
}

/// An integer column of every parent row (the parents are view rows as JSON).
fn int_column(batch: &FieldBatch, column: &str) -> Result<Vec<i32>, ResolverError> {
    batch
        .parents
        .iter()
        .map(|p| {
            p.get(column)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| ResolverError::internal(format!("parent row without `{column}`")))
        })
        .collect()
}

/// `count(*)` of `table` rows whose `fk` is each key, in the keys' order: ONE statement for
/// all parents.
async fn counts(
    db: &Transaction,
    table: &str,
    fk: &str,
    keys: &[i32],
) -> Result<Vec<Value>, ResolverError> {
    let sql = format!(
        "SELECT count(c.{fk}) FROM unnest($1::int[]) WITH ORDINALITY AS k(pk, n) \
         LEFT JOIN {table} c ON c.{fk} = k.pk GROUP BY k.n ORDER BY k.n"
    );
    let rows = db.query(&sql, &[&keys]).await?;
    Ok(rows
        .iter()
        .map(|r| Value::from(r.get::<_, i64>(0)))
        .collect())
}

/// `Organization.memberCount` for every organization of one level at once.
pub async fn member_count(ctx: Context, batch: FieldBatch) -> Result<Vec<Value>, ResolverError> {
    let keys = int_column(&batch, "pk_org")?;
    counts(ctx.db(), "tb_member", "fk_org", &keys).await
}

/// `Project.taskCount` for every project of one level at once.
pub async fn task_count(ctx: Context, batch: FieldBatch) -> Result<Vec<Value>, ResolverError> {
    let keys = int_column(&batch, "pk_project")?;
    counts(ctx.db(), "tb_task", "fk_project", &keys).await
}

/// The seed's `create_project`: check that the organization belongs to the tenant, insert,
/// return the new project's id (fraiseql reads it back through `v_project` with the client's
/// selection). Runs in the request's transaction with the tenant context set.
pub async fn create_project(ctx: Context, args: Args) -> Result<Value, ResolverError> {
    let org_id = args.str("orgId")?;
    let name = args.str("name")?;
    let tenant_id = ctx
        .tenant_id()
        .ok_or_else(|| ResolverError::forbidden("a tenant is required"))?;
    // Row-level security already hides other tenants' rows; the tenant_id test is the seed's
    // explicit ownership check on top.
    let org = ctx
        .db()
        .query_opt(
            "SELECT pk_org FROM tb_organization WHERE id = $1::text::uuid AND tenant_id = $2",
            &[&org_id, &tenant_id],
        )
        .await?;
    let Some(org) = org else {
        return Err(ResolverError::not_found("Organization not found"));
    };
    let pk_org: i32 = org.get(0);
    let row = ctx
        .db()
        .query_one(
            "INSERT INTO tb_project (tenant_id, fk_org, name, identifier) \
             VALUES ($1, $2, $3, fn_slug($3)) RETURNING id::text",
            &[&tenant_id, &pk_org, &name],
        )
        .await?;
    Ok(Value::String(row.get(0)))
}
