//! The transactional outbox: observer rules become INSERT statements that run in the mutation's
//! transaction, so an event exists if and only if its change committed.

use std::collections::HashMap;

use fraiseql_config::{ChangeKind, ObserverRule};
use fraiseql_schema::{quote_ident, quote_literal, Catalog};

/// The outbox table, created in every tenant database or schema (and in a single database) by
/// provisioning and `fraiseql migrate`. Sent rows are kept a day for inspection, then pruned.
/// `traceparent` (added to older tables by the same statements) is the W3C trace context of
/// the request that wrote the row, when OpenTelemetry is on: the relay continues its trace.
pub const DDL: &str = "CREATE TABLE IF NOT EXISTS fraiseql_outbox (
    event_id uuid PRIMARY KEY,
    tenant_key text,
    subject text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    last_error text,
    traceparent text
);
ALTER TABLE fraiseql_outbox ADD COLUMN IF NOT EXISTS traceparent text;
CREATE INDEX IF NOT EXISTS fraiseql_outbox_unsent ON fraiseql_outbox (next_attempt_at) WHERE sent_at IS NULL;";

/// Under `row_level` every tenant's events are in one outbox: row-level security keeps each
/// tenant's rows to itself, by the transaction's `app.tenant_key` (what requests and the relay
/// set), for reads and writes alike. No context, no rows. Idempotent: provisioning and `fraiseql
/// migrate` apply it to every `row_level` host.
pub const SHARED_POLICY: &str = "ALTER TABLE fraiseql_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE fraiseql_outbox FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = 'fraiseql_outbox'::regclass AND polname = 'fraiseql_tenant_outbox') THEN
        CREATE POLICY fraiseql_tenant_outbox ON fraiseql_outbox
            USING (tenant_key = (SELECT nullif(current_setting('app.tenant_key', true), '')))
            WITH CHECK (tenant_key = (SELECT nullif(current_setting('app.tenant_key', true), '')));
    END IF;
END $$;";

/// One event written by a mutation, as returned by the outbox INSERT.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// The event id (also the JetStream `Nats-Msg-Id`).
    pub event_id: String,
    /// The subject.
    pub subject: String,
    /// The JSON body.
    pub payload: String,
    /// The W3C `traceparent` of the request that wrote it (OpenTelemetry on).
    pub traceparent: Option<String>,
}

/// An observer rule as a statement: `$1` tenant key, `$2` subject (for change events: the
/// subject prefix, the rest is added by the statement), `$3` traceparent (or `NULL`); the
/// changed keys are the mutation's, in the transaction's `fraiseql.keys` setting (so it can be
/// sent together with the mutation). Returns `event_id, subject, payload, traceparent` of each
/// event written.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverStatement {
    /// The subject (`$2`).
    pub subject: String,
    /// The INSERT … RETURNING.
    pub sql: String,
}

/// Observer statements by (entity, operation).
#[derive(Debug, Clone, Default)]
pub struct Observers {
    by_change: HashMap<(String, String), Vec<ObserverStatement>>,
}

impl Observers {
    /// Builds the statements of `rules` against `catalog`; an error names the rule.
    pub fn build(rules: &[ObserverRule], catalog: &Catalog) -> Result<Self, String> {
        let mut by_change: HashMap<(String, String), Vec<ObserverStatement>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let ty = catalog.types.get(&rule.entity).ok_or_else(|| {
                format!(
                    "[[observers.rules]] #{}: entity `{}` is not a type with @view",
                    i + 1,
                    rule.entity
                )
            })?;
            if ty.database != fraiseql_config::TENANT_DATABASE {
                return Err(format!(
                    "[[observers.rules]] #{}: `{}` lives in database `{}`; observed entities must live in the tenant database (where the outbox is)",
                    i + 1,
                    rule.entity,
                    ty.database
                ));
            }
            let key = quote_ident(&ty.key_column);
            let mut pairs = vec![
                "'event_id', s.eid".to_owned(),
                "'event_type', $2::text".to_owned(),
                "'tenant_id', $1::text".to_owned(),
                format!("'entity', {}", quote_literal(&rule.entity)),
                format!("'operation', {}", quote_literal(rule.event.as_str())),
                "'timestamp', to_jsonb(statement_timestamp())".to_owned(),
            ];
            let sql = if rule.event == ChangeKind::Delete {
                // The rows are gone: the payload can only carry the key.
                pairs.push("'key', s.k".to_owned());
                for (out, source) in &rule.payload {
                    let v = if *source == ty.key_column {
                        "s.k"
                    } else {
                        "NULL"
                    };
                    pairs.push(format!("{}, {v}", quote_literal(out)));
                }
                format!(
                    "INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload, traceparent) \
                     SELECT s.eid, $1, $2, jsonb_build_object({}), $3::text \
                     FROM (SELECT gen_random_uuid() AS eid, e.k FROM json_array_elements_text(coalesce(current_setting('{}', true), '[]')::json) AS e(k) WHERE e.k IS NOT NULL) s \
                     RETURNING event_id::text, subject, payload::text, traceparent",
                    pairs.join(", "),
                    fraiseql_schema::KEYS_SETTING
                )
            } else {
                pairs.push(format!("'key', s.{key}"));
                for (out, source) in &rule.payload {
                    pairs.push(format!(
                        "{}, s.{}->{}",
                        quote_literal(out),
                        quote_ident(&ty.data_column),
                        quote_literal(source)
                    ));
                }
                format!(
                    "INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload, traceparent) \
                     SELECT s.eid, $1, $2, jsonb_build_object({}), $3::text \
                     FROM (SELECT gen_random_uuid() AS eid, t.* FROM {view} t WHERE t.{key} = ANY({keys}) ORDER BY array_position({keys}, t.{key})) s \
                     RETURNING event_id::text, subject, payload::text, traceparent",
                    pairs.join(", "),
                    keys = fraiseql_schema::returned_keys(&ty.view.to_string(), &ty.key_column),
                    view = ty.view
                )
            };
            by_change
                .entry((rule.entity.clone(), rule.event.as_str().to_owned()))
                .or_default()
                .push(ObserverStatement {
                    subject: rule.subject.clone(),
                    sql,
                });
        }
        Ok(Self { by_change })
    }

    /// Adds, for each (entity, operation) a subscription field listens to, the statement that
    /// writes its change events: one outbox row per changed row, on subject
    /// `<prefix>.<tenant key, or _ without tenancy>.<Entity>.<OPERATION>` (tenant keys are
    /// `[a-z0-9_]`: valid subject tokens), carrying the key, entity, operation, tenant, event
    /// id and the time of the write. They ride on the outbox and the relay like any event, so
    /// a change event exists if and only if its change committed, and is published once.
    pub fn add_changes<'c>(
        &mut self,
        changes: impl IntoIterator<Item = &'c fraiseql_schema::Change>,
        catalog: &Catalog,
        prefix: &str,
    ) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for change in changes {
            if !seen.insert((change.entity.as_str(), change.operation.as_str())) {
                continue;
            }
            let ty = catalog.types.get(&change.entity).ok_or_else(|| {
                format!(
                    "@event(entity: {:?}) is not a type with @view",
                    change.entity
                )
            })?;
            if ty.database != fraiseql_config::TENANT_DATABASE {
                return Err(format!(
                    "@event(entity: {:?}): `{}` lives in database `{}`; subscribed entities must live in the tenant database (where the outbox is)",
                    change.entity, change.entity, ty.database
                ));
            }
            let subject = format!(
                "$2::text || '.' || coalesce(nullif($1::text, ''), '_') || {}",
                quote_literal(&format!(".{}.{}", change.entity, change.operation))
            );
            // The key as text, so the payload is the same whatever the key column's type; the
            // time is the write's (clock_timestamp: the latency histogram measures from it).
            let sql = format!(
                "INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload, traceparent) \
                 SELECT s.eid, $1, {subject}, jsonb_build_object('event_id', s.eid, 'tenant_id', $1::text, 'entity', {entity}, 'operation', {operation}, 'key', s.k, 'timestamp', to_jsonb(clock_timestamp())), $3::text \
                 FROM (SELECT gen_random_uuid() AS eid, t.{key}::text AS k FROM {view} t WHERE t.{key} = ANY({keys}) ORDER BY array_position({keys}, t.{key})) s \
                 RETURNING event_id::text, subject, payload::text, traceparent",
                entity = quote_literal(&change.entity),
                operation = quote_literal(&change.operation),
                key = quote_ident(&ty.key_column),
                keys = fraiseql_schema::returned_keys(&ty.view.to_string(), &ty.key_column),
                view = ty.view
            );
            self.by_change
                .entry((change.entity.clone(), change.operation.clone()))
                .or_default()
                .push(ObserverStatement {
                    subject: prefix.to_owned(),
                    sql,
                });
        }
        Ok(())
    }

    /// The statements for a change of `entity` by `operation`.
    pub fn statements(&self, entity: &str, operation: &str) -> &[ObserverStatement] {
        self.by_change
            .get(&(entity.to_owned(), operation.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether any rule exists.
    pub fn is_empty(&self) -> bool {
        self.by_change.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = include_str!("../../../../examples/saas/schema.graphql");

    #[test]
    fn rules_become_outbox_inserts() {
        let b = fraiseql_schema::build(SDL, "schema.graphql").expect("schema");
        let rules = vec![
            ObserverRule {
                entity: "Project".into(),
                event: ChangeKind::Create,
                subject: "analytics.project_created".into(),
                payload: [("project_id".to_owned(), "id".to_owned())].into(),
            },
            ObserverRule {
                entity: "Project".into(),
                event: ChangeKind::Delete,
                subject: "analytics.project_deleted".into(),
                payload: [("project_id".to_owned(), "id".to_owned())].into(),
            },
        ];
        let o = Observers::build(&rules, &b.catalog).expect("observers");
        insta::assert_snapshot!(o.statements("Project", "CREATE")[0].sql, @r#"INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload, traceparent) SELECT s.eid, $1, $2, jsonb_build_object('event_id', s.eid, 'event_type', $2::text, 'tenant_id', $1::text, 'entity', 'Project', 'operation', 'CREATE', 'timestamp', to_jsonb(statement_timestamp()), 'key', s."id", 'project_id', s."data"->'id'), $3::text FROM (SELECT gen_random_uuid() AS eid, t.* FROM "v_project" t WHERE t."id" = ANY(ARRAY(SELECT (json_populate_record(NULL::"v_project", json_build_object('id', e.value)))."id" FROM json_array_elements_text(coalesce(current_setting('fraiseql.keys', true), '[]')::json) WITH ORDINALITY AS e(value, n) ORDER BY e.n)) ORDER BY array_position(ARRAY(SELECT (json_populate_record(NULL::"v_project", json_build_object('id', e.value)))."id" FROM json_array_elements_text(coalesce(current_setting('fraiseql.keys', true), '[]')::json) WITH ORDINALITY AS e(value, n) ORDER BY e.n), t."id")) s RETURNING event_id::text, subject, payload::text, traceparent"#);
        insta::assert_snapshot!(o.statements("Project", "DELETE")[0].sql, @"INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload, traceparent) SELECT s.eid, $1, $2, jsonb_build_object('event_id', s.eid, 'event_type', $2::text, 'tenant_id', $1::text, 'entity', 'Project', 'operation', 'DELETE', 'timestamp', to_jsonb(statement_timestamp()), 'key', s.k, 'project_id', s.k), $3::text FROM (SELECT gen_random_uuid() AS eid, e.k FROM json_array_elements_text(coalesce(current_setting('fraiseql.keys', true), '[]')::json) AS e(k) WHERE e.k IS NOT NULL) s RETURNING event_id::text, subject, payload::text, traceparent");
        assert!(o.statements("Project", "UPDATE").is_empty());
        let bad = vec![ObserverRule {
            entity: "Nope".into(),
            ..rules[0].clone()
        }];
        assert!(Observers::build(&bad, &b.catalog)
            .expect_err("unknown entity")
            .contains("entity `Nope` is not a type with @view"));
    }

    #[test]
    fn subscribed_changes_become_outbox_inserts_on_the_tenants_subject() {
        let b = fraiseql_schema::build(SDL, "schema.graphql").expect("schema");
        let mut o = Observers::default();
        o.add_changes(
            b.catalog.subscriptions.values().map(|s| &s.change),
            &b.catalog,
            "fraiseql.changes",
        )
        .expect("changes");
        let st = &o.statements("Task", "UPDATE")[0];
        assert_eq!(st.subject, "fraiseql.changes", "$2 is the prefix");
        insta::assert_snapshot!(st.sql, @r#"INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload, traceparent) SELECT s.eid, $1, $2::text || '.' || coalesce(nullif($1::text, ''), '_') || '.Task.UPDATE', jsonb_build_object('event_id', s.eid, 'tenant_id', $1::text, 'entity', 'Task', 'operation', 'UPDATE', 'key', s.k, 'timestamp', to_jsonb(clock_timestamp())), $3::text FROM (SELECT gen_random_uuid() AS eid, t."id"::text AS k FROM "v_task" t WHERE t."id" = ANY(ARRAY(SELECT (json_populate_record(NULL::"v_task", json_build_object('id', e.value)))."id" FROM json_array_elements_text(coalesce(current_setting('fraiseql.keys', true), '[]')::json) WITH ORDINALITY AS e(value, n) ORDER BY e.n)) ORDER BY array_position(ARRAY(SELECT (json_populate_record(NULL::"v_task", json_build_object('id', e.value)))."id" FROM json_array_elements_text(coalesce(current_setting('fraiseql.keys', true), '[]')::json) WITH ORDINALITY AS e(value, n) ORDER BY e.n), t."id")) s RETURNING event_id::text, subject, payload::text, traceparent"#);
        assert_eq!(o.statements("Project", "CREATE").len(), 1);
        assert!(o.statements("Project", "UPDATE").is_empty());
    }
}
