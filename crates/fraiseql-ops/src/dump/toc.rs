//! What a restore lets a `pg_dump` archive hold (pure): `pg_restore --list` read entry by entry,
//! each refused unless it is a kind of object a tenant's tables need and lives in the tenant's
//! place (any schema of its own database, or its one schema). The list that remains is what
//! `pg_restore --use-list` runs. This names what is refused; the restore running as a role
//! that can only create there is what confines the rest (`confine.rs`).

/// Entry kinds a restore runs: a tenant's tables, their data and what hangs on them.
const ALLOWED: &[&str] = &[
    "AGGREGATE",
    "CHECK CONSTRAINT",
    "COLLATION",
    "COMMENT",
    "CONSTRAINT",
    "DEFAULT",
    "DOMAIN",
    "FK CONSTRAINT",
    "FUNCTION",
    "INDEX",
    "INDEX ATTACH",
    "POLICY",
    "PROCEDURE",
    "ROW SECURITY",
    "SCHEMA",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "SHELL TYPE",
    "STATISTICS",
    "TABLE",
    "TABLE ATTACH",
    "TABLE DATA",
    "TRIGGER",
    "TYPE",
    "VIEW",
];

/// Entry kinds refused: they reach beyond the tenant, or run with their owner's rights (which
/// after a restore are the admin's).
const REFUSED: &[&str] = &[
    "ACCESS METHOD",
    "ACL",
    "BLOB",
    "BLOB METADATA",
    "BLOBS",
    "CAST",
    "CONVERSION",
    "DATABASE",
    "DATABASE PROPERTIES",
    "DEFAULT ACL",
    "EVENT TRIGGER",
    "EXTENSION",
    "FOREIGN DATA WRAPPER",
    "FOREIGN TABLE",
    "LARGE OBJECT",
    "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA",
    "OPERATOR",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "PROCEDURAL LANGUAGE",
    "PUBLICATION",
    "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA",
    "RULE",
    "SECURITY LABEL",
    "SERVER",
    "SUBSCRIPTION",
    "SUBSCRIPTION TABLE",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "TRANSFORM",
    "USER MAPPING",
];

/// Session settings pg_dump records as entries of their own (no schema).
const SETTINGS: &[&str] = &["ENCODING", "STDSTRINGS", "SEARCHPATH"];

/// Where the tenant's objects may live.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place<'a> {
    /// A database of its own: any schema but PostgreSQL's.
    Database,
    /// One schema (the archive's name for it), which the restore creates beforehand: its
    /// `SCHEMA` entry is left out.
    Schema(&'a str),
}

/// One entry of `pg_restore --list`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry<'a> {
    line: &'a str,
    kind: &'static str,
    /// `-` when the entry has no schema.
    schema: &'a str,
    /// The rest: the object's name (a COMMENT's starts with the commented object's kind).
    rest: &'a str,
}

/// Reads one list line (`<id>; <oid> <oid> <KIND> <schema> <name> <owner>`); `None` for
/// comments and blank lines.
fn entry(line: &str) -> Result<Option<Entry<'_>>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with(';') {
        return Ok(None);
    }
    let bad = || format!("an entry pg_restore lists in a form this fraiseql does not know: {t}");
    let (_, after_id) = t.split_once("; ").ok_or_else(bad)?;
    let mut words = after_id.splitn(3, ' ');
    let (_, _, rest) = (words.next(), words.next(), words.next().ok_or_else(bad)?);
    let kind = ALLOWED
        .iter()
        .chain(REFUSED)
        .chain(SETTINGS)
        .filter(|k| rest == **k || rest.starts_with(&format!("{k} ")))
        .max_by_key(|k| k.len())
        .copied()
        .ok_or_else(bad)?;
    let after_kind = rest[kind.len()..].trim_start();
    let (schema, rest) = after_kind.split_once(' ').unwrap_or((after_kind, ""));
    Ok(Some(Entry {
        line,
        kind,
        schema,
        rest,
    }))
}

fn system_schema(s: &str) -> bool {
    s == "pg_catalog" || s == "information_schema" || s.starts_with("pg_")
}

impl Place<'_> {
    /// Whether objects may live in `schema`.
    fn holds(&self, schema: &str) -> bool {
        match self {
            Place::Database => !system_schema(schema),
            Place::Schema(s) => schema == *s,
        }
    }
}

/// Checks the list `pg_restore --list` printed for a tenant's archive: every entry must be
/// of an allowed kind and in `place`. Returns the list to restore (`--use-list`), or why the
/// archive is refused.
pub(crate) fn check(list: &str, place: Place<'_>) -> Result<String, String> {
    let mut keep = String::new();
    for line in list.lines() {
        let Some(e) = entry(line)? else {
            continue;
        };
        let named = || format!("{} {} {}", e.kind, e.schema, e.rest.trim());
        if REFUSED.contains(&e.kind) {
            return Err(format!(
                "its dump holds {}, which is not a tenant's table, view, function or data: refused, nothing was restored",
                named()
            ));
        }
        let schema_entry_name = e.rest.split(' ').next().unwrap_or("");
        let in_place = match (e.kind, e.schema) {
            (k, "-") if SETTINGS.contains(&k) => true,
            ("SCHEMA", "-") => place.holds(schema_entry_name),
            ("COMMENT", "-") => {
                e.rest.starts_with("SCHEMA ")
                    && place.holds(e.rest["SCHEMA ".len()..].split(' ').next().unwrap_or(""))
            }
            (_, s) => s != "-" && place.holds(s),
        };
        if !in_place {
            return Err(format!(
                "its dump holds {}, outside the tenant's {}: refused, nothing was restored",
                named(),
                match place {
                    Place::Database => "database".to_owned(),
                    Place::Schema(s) => format!("schema {s}"),
                }
            ));
        }
        if matches!(place, Place::Schema(_)) && e.kind == "SCHEMA" {
            // Made beforehand, owned by the role the restore runs as.
            continue;
        }
        keep.push_str(e.line);
        keep.push('\n');
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = ";
; Archive created at 2026-12-06 04:34:09 UTC
;     dbname: tenant_acme
;
7; 2615 261259 SCHEMA - t_acme postgres
235; 1255 261214 FUNCTION t_acme fn_bulk_create_projects(uuid, text[]) postgres
230; 1259 261215 TABLE t_acme fraiseql_migrations postgres
219; 1259 260976 TABLE t_acme tb_member postgres
3522; 0 0 SEQUENCE OWNED BY t_acme tb_member_pk_member_seq postgres
3525; 0 0 COMMENT t_acme TABLE tb_task postgres
226; 1259 261171 VIEW t_acme v_member postgres
3296; 2604 260979 DEFAULT t_acme tb_member pk_member postgres
3506; 0 260976 TABLE DATA t_acme tb_member postgres
3527; 0 0 SEQUENCE SET t_acme tb_member_pk_member_seq postgres
3341; 2606 260992 FK CONSTRAINT t_acme tb_member tb_member_fk_org_fkey postgres
3494; 0 260976 ROW SECURITY t_acme tb_member postgres
3499; 3256 261190 POLICY t_acme tb_member tenant_isolation postgres
";

    #[test]
    fn a_tenants_schema_is_kept_without_its_schema_entry() {
        let keep = check(LIST, Place::Schema("t_acme")).expect("allowed");
        assert!(!keep.contains("SCHEMA - t_acme"), "{keep}");
        assert_eq!(keep.lines().count(), 12, "{keep}");
        assert!(keep.contains("3506; 0 260976 TABLE DATA t_acme tb_member postgres"));
        let db = check(&LIST.replace("t_acme", "public"), Place::Database).expect("allowed");
        assert!(db.contains("SCHEMA - public"), "{db}");
    }

    #[test]
    fn entries_beyond_the_tenant_are_refused_by_name() {
        let refused =
            |extra: &str, place| check(&format!("{LIST}{extra}\n"), place).expect_err("refused");
        let e = refused(
            "3290; 3466 261221 EVENT TRIGGER - watch_ddl postgres",
            Place::Database,
        );
        assert!(e.contains("EVENT TRIGGER - watch_ddl"), "{e}");
        let e = refused("2; 3079 261222 EXTENSION - pgcrypto ", Place::Database);
        assert!(e.contains("EXTENSION - pgcrypto"), "{e}");
        let e = refused(
            "3514; 0 261263 MATERIALIZED VIEW DATA t_acme mv postgres",
            Place::Schema("t_acme"),
        );
        assert!(e.contains("MATERIALIZED VIEW DATA t_acme mv"), "{e}");
        let e = refused(
            "3492; 2618 261267 RULE t_acme t r postgres",
            Place::Schema("t_acme"),
        );
        assert!(e.contains("RULE"), "{e}");
        let e = refused(
            "236; 1255 261220 FUNCTION public fn_evil() postgres",
            Place::Schema("t_acme"),
        );
        assert!(e.contains("outside the tenant's schema t_acme"), "{e}");
        let e = refused(
            "7; 2615 261259 SCHEMA - other postgres",
            Place::Schema("t_acme"),
        );
        assert!(e.contains("SCHEMA - other"), "{e}");
        let e = refused(
            "236; 1255 261220 FUNCTION pg_catalog now() postgres",
            Place::Database,
        );
        assert!(e.contains("outside the tenant's database"), "{e}");
        let e = refused("99; 0 0 ACL - SCHEMA public postgres", Place::Database);
        assert!(e.contains("ACL"), "{e}");
        let e = refused("99; 1 2 SOMETHING NEW x y z", Place::Database);
        assert!(e.contains("does not know"), "{e}");
    }
}
