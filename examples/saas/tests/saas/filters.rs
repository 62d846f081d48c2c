//! `where` filters end to end, under each tenancy strategy: every operator and combinator,
//! relation filters (a list: "at least one", a single relation), typed comparisons, tenants
//! kept apart, `[rbac]` on filtered fields and the bounds on a filter's size.

use fraiseql::engine::tenancy::TenantRecord;
use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{assert_unreadable, code, send, world_with};

/// Arranges tenant `rec`'s data as the superuser: organizations with fixed creation times,
/// members, projects and tasks. `names`: (identifier, name, tier, created_at).
async fn seed(t: &TestTenancy, rec: &TenantRecord, names: &[(&str, &str, &str, &str)]) {
    let c = t.admin_client(rec).await.expect("admin client");
    let id = rec.id.to_string();
    for (ident, name, tier, created) in names {
        c.execute(
            "INSERT INTO tb_organization (identifier, tenant_id, name, subscription_tier, created_at) VALUES ($1, $2::text::uuid, $3, $4, $5::text::timestamptz)",
            &[ident, &id, name, tier, created],
        )
        .await
        .expect("insert organization");
    }
    c.batch_execute(&format!(
        "INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email)
           SELECT o.identifier || '-m' || i, o.tenant_id, o.pk_org, 'Member ' || i, 'm' || i || '@' || o.identifier || '.test'
           FROM tb_organization o, generate_series(1, 2) i WHERE o.identifier IN ('acme', 'bravo') AND o.tenant_id = '{id}';
         INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
           SELECT p.ident, o.tenant_id, o.pk_org, p.name
           FROM tb_organization o JOIN (VALUES ('acme', 'alpha', 'Alpha'), ('acme', 'beta-p', 'Beta'), ('beta', 'gamma', 'Gamma'), ('bravo', 'bravo-p', 'Alpha'))
             AS p(org, ident, name) ON p.org = o.identifier
           WHERE o.tenant_id = '{id}';
         INSERT INTO tb_task (identifier, tenant_id, fk_project, title, status)
           SELECT p.identifier || '-' || t.ident, p.tenant_id, p.pk_project, t.title, t.status
           FROM tb_project p JOIN (VALUES ('alpha', 't1', 'Write docs', 'todo'), ('alpha', 't2', 'Ship', 'done'), ('gamma', 't3', 'Plan', 'in_progress'))
             AS t(project, ident, title, status) ON t.project = p.identifier
           WHERE p.tenant_id = '{id}';"
    ))
    .await
    .expect("seed");
}

const ACME: [(&str, &str, &str, &str); 4] = [
    ("acme", "Acme Corp", "pro", "2025-06-01T00:00:00Z"),
    ("beta", "Beta LLC", "free", "2026-02-01T00:00:00Z"),
    ("zeta", "Zeta Inc", "free", "2026-03-01T00:00:00Z"),
    ("shop", "50% Off_Shop", "free", "2026-04-01T00:00:00Z"),
];

/// Two tenants: `tenant_a` with [`ACME`], `tenant_b` with "Bravo Org" (whose project is also
/// named Alpha); a client made after them (so it knows the views' columns), as tenant A.
async fn two_tenants(strategy: &str, extra: &str) -> (TestTenancy, TestClient, String) {
    let t = world_with(strategy, extra).await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    seed(&t, &a, &ACME).await;
    seed(
        &t,
        &b,
        &[("bravo", "Bravo Org", "pro", "2026-01-15T00:00:00Z")],
    )
    .await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    let c = t.admin_client(&a).await.expect("admin");
    let acme: String = c
        .query_one(
            "SELECT id::text FROM tb_organization WHERE identifier = 'acme' AND tenant_id = $1::text::uuid",
            &[&a.id.to_string()],
        )
        .await
        .expect("acme")
        .get(0);
    (t, client, acme)
}

/// The names of the organizations `where` matches, by name.
async fn names(client: &TestClient, w: Value) -> Vec<String> {
    let r = client
        .execute_with(
            "query($w: OrganizationWhereInput) { organizations(where: $w, limit: 100) { name } }",
            json!({ "w": w }),
        )
        .await
        .expect("execute");
    let list = r.json["data"]["organizations"]
        .as_array()
        .unwrap_or_else(|| panic!("{w}: {}", r.text));
    list.iter()
        .map(|o| o["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

each_strategy!(every_operator_and_combinator);
each_strategy!(relation_filters_of_both_kinds);
each_strategy!(filters_never_cross_tenants);
each_strategy!(rbac_and_bounds_apply_to_filters);

async fn every_operator_and_combinator(strategy: &str) {
    let (_t, client, acme) = two_tenants(strategy, "").await;
    let all = ["50% Off_Shop", "Acme Corp", "Beta LLC", "Zeta Inc"];
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), all.to_vec()),
        (json!({"name": {"eq": "Acme Corp"}}), vec!["Acme Corp"]),
        (
            json!({"name": {"neq": "Acme Corp"}}),
            vec!["50% Off_Shop", "Beta LLC", "Zeta Inc"],
        ),
        (json!({"name": {"gt": "Beta LLC"}}), vec!["Zeta Inc"]),
        (
            json!({"name": {"gte": "Beta LLC"}}),
            vec!["Beta LLC", "Zeta Inc"],
        ),
        (json!({"name": {"lt": "Acme Corp"}}), vec!["50% Off_Shop"]),
        (
            json!({"name": {"lte": "Acme Corp"}}),
            vec!["50% Off_Shop", "Acme Corp"],
        ),
        (
            json!({"name": {"in": ["Zeta Inc", "Acme Corp", "Nobody"]}}),
            vec!["Acme Corp", "Zeta Inc"],
        ),
        (
            json!({"name": {"nin": ["Zeta Inc", "Acme Corp"]}}),
            vec!["50% Off_Shop", "Beta LLC"],
        ),
        (json!({"name": {"in": []}}), vec![]),
        (json!({"name": {"isnull": false}}), all.to_vec()),
        (json!({"name": {"isnull": true}}), vec![]),
        (json!({"name": {"like": "%LLC"}}), vec!["Beta LLC"]),
        (json!({"name": {"like": "%llc"}}), vec![]),
        (json!({"name": {"ilike": "%llc"}}), vec!["Beta LLC"]),
        (
            json!({"name": {"contains": "eta"}}),
            vec!["Beta LLC", "Zeta Inc"],
        ),
        (json!({"name": {"contains": "ETA"}}), vec![]),
        (
            json!({"name": {"icontains": "ETA"}}),
            vec!["Beta LLC", "Zeta Inc"],
        ),
        // LIKE's wildcards are literal in contains/startswith/endswith.
        (json!({"name": {"contains": "_"}}), vec!["50% Off_Shop"]),
        (json!({"name": {"startswith": "50%"}}), vec!["50% Off_Shop"]),
        (json!({"name": {"startswith": "5_%"}}), vec![]),
        (json!({"name": {"startswith": "Ze"}}), vec!["Zeta Inc"]),
        (json!({"name": {"istartswith": "ze"}}), vec!["Zeta Inc"]),
        (json!({"name": {"endswith": "Inc"}}), vec!["Zeta Inc"]),
        (json!({"name": {"iendswith": "INC"}}), vec!["Zeta Inc"]),
        (json!({"name": {"gte": "B", "lt": "Z"}}), vec!["Beta LLC"]),
        (json!({"name": {"eq": null}}), all.to_vec()),
        (
            json!({"subscriptionTier": {"eq": "pro"}}),
            vec!["Acme Corp"],
        ),
        (json!({"id": {"eq": acme}}), vec!["Acme Corp"]),
        (json!({"id": {"in": [acme]}}), vec!["Acme Corp"]),
        // An @sql field: the expression is compared (a count, as a number).
        (json!({"memberCount": {"gte": 2}}), vec!["Acme Corp"]),
        (
            json!({"memberCount": {"lt": 1}}),
            vec!["50% Off_Shop", "Beta LLC", "Zeta Inc"],
        ),
        // Instants, not text: 2026-02-01T00:30+01:00 is 2026-01-31T23:30Z, before Beta's
        // 2026-02-01T00:00Z (as text it would sort after it).
        (
            json!({"createdAt": {"gt": "2026-02-01T00:30:00+01:00"}}),
            vec!["50% Off_Shop", "Beta LLC", "Zeta Inc"],
        ),
        (
            json!({"createdAt": {"eq": "2026-02-01T01:00:00+01:00"}}),
            vec!["Beta LLC"],
        ),
        (
            json!({"createdAt": {"lt": "2026-01-01T00:00:00Z"}}),
            vec!["Acme Corp"],
        ),
        (
            json!({"createdAt": {"in": ["2026-03-01T00:00:00Z", "2026-02-28T23:00:00-01:00"]}}),
            vec!["Zeta Inc"],
        ),
        // Combinators.
        (
            json!({"_or": [{"name": {"eq": "Acme Corp"}}, {"name": {"eq": "Zeta Inc"}}]}),
            vec!["Acme Corp", "Zeta Inc"],
        ),
        (
            json!({"_and": [{"name": {"contains": "e"}}, {"name": {"contains": "t"}}]}),
            vec!["Beta LLC", "Zeta Inc"],
        ),
        (
            json!({"_not": {"name": {"eq": "Acme Corp"}}}),
            vec!["50% Off_Shop", "Beta LLC", "Zeta Inc"],
        ),
        (
            json!({"subscriptionTier": {"eq": "free"}, "_or": [{"name": {"startswith": "B"}}, {"_not": {"createdAt": {"lt": "2026-03-15T00:00:00Z"}}}]}),
            vec!["50% Off_Shop", "Beta LLC"],
        ),
        (json!({"_and": []}), all.to_vec()),
        (json!({"_or": []}), vec![]),
        (json!({"_or": [{}, {"name": {"eq": "x"}}]}), all.to_vec()),
        (json!({"_not": {}}), vec![]),
    ];
    for (w, want) in cases {
        assert_eq!(names(&client, w.clone()).await, want, "{strategy}: {w}");
    }
    // Literals in the document work the same (and are validated against the input types).
    let v = client
        .execute(r#"{ organizations(where: {name: {startswith: "Ac"}, createdAt: {lt: "2026-01-01T00:00:00Z"}}) { name } }"#)
        .await
        .expect("execute");
    assert_eq!(
        v,
        json!({"data": {"organizations": [{"name": "Acme Corp"}]}}),
        "{strategy}"
    );
    // A value PostgreSQL cannot read as the field's type is the client's mistake.
    let r = client
        .execute_with(
            "query($w: OrganizationWhereInput) { organizations(where: $w) { name } }",
            json!({"w": {"createdAt": {"gte": "yesterday-ish"}}}),
        )
        .await
        .expect("send");
    assert_eq!(code(&r.json), "BAD_USER_INPUT", "{strategy}: {}", r.text);
}

async fn relation_filters_of_both_kinds(strategy: &str) {
    let (_t, client, acme) = two_tenants(strategy, "").await;
    // A list relation: organizations with at least one matching project (EXISTS), nested.
    assert_eq!(
        names(&client, json!({"projects": {"name": {"eq": "Alpha"}}})).await,
        ["Acme Corp"]
    );
    assert_eq!(
        names(
            &client,
            json!({"projects": {"tasks": {"status": {"eq": "in_progress"}}}})
        )
        .await,
        ["Beta LLC"]
    );
    assert_eq!(
        names(
            &client,
            json!({"projects": {"tasks": {"status": {"in": ["todo", "in_progress"]}}}})
        )
        .await,
        ["Acme Corp", "Beta LLC"]
    );
    assert_eq!(
        names(&client, json!({"_not": {"projects": {}}})).await,
        ["50% Off_Shop", "Zeta Inc"],
        "{strategy}: organizations without any project"
    );
    assert_eq!(
        names(
            &client,
            json!({"members": {"email": {"endswith": "@acme.test"}}})
        )
        .await,
        ["Acme Corp"]
    );
    // A single relation (Project.organization), and `where` on a nested list.
    let v = client
        .execute_with(
            r#"query($o: ID!) {
                 pro: projectsByOrg(orgId: $o, where: {organization: {subscriptionTier: {eq: "pro"}}}) { name }
                 free: projectsByOrg(orgId: $o, where: {organization: {subscriptionTier: {eq: "free"}}}) { name }
                 organizations(limit: 5, where: {name: {eq: "Acme Corp"}}) { projects(limit: 10, where: {tasks: {status: {eq: "done"}}}) { name tasks(limit: 10, where: {status: {neq: "done"}}) { title } } }
               }"#,
            json!({ "o": acme }),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(
        v,
        json!({"data": {
            "pro": [{"name": "Alpha"}, {"name": "Beta"}],
            "free": [],
            "organizations": [{"projects": [{"name": "Alpha", "tasks": [{"title": "Write docs"}]}]}]
        }}),
        "{strategy}"
    );
}

async fn filters_never_cross_tenants(strategy: &str) {
    let (_t, mut client, acme) = two_tenants(strategy, "").await;
    client.set_tenant("tenant_b");
    // B's rows only, whatever the filter names: A's names, A's ids, relations to A's rows.
    assert_eq!(
        names(&client, json!({"name": {"eq": "Acme Corp"}})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(&client, json!({"id": {"in": [acme]}})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(&client, json!({"projects": {"name": {"eq": "Alpha"}}})).await,
        ["Bravo Org"],
        "{strategy}: B's own Alpha"
    );
    assert_eq!(
        names(
            &client,
            json!({"projects": {"tasks": {"title": {"eq": "Write docs"}}}})
        )
        .await,
        Vec::<String>::new(),
        "{strategy}: A's task is invisible to B's EXISTS"
    );
    assert_eq!(
        names(
            &client,
            json!({"_or": [{"name": {"startswith": "A"}}, {"_not": {"name": {"startswith": "A"}}}]})
        )
        .await,
        ["Bravo Org"]
    );
    let v = client
        .execute_with(
            "query($o: ID!) { projectsByOrg(orgId: $o, where: {name: {eq: \"Alpha\"}}) { name } }",
            json!({ "o": acme }),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(v, json!({"data": {"projectsByOrg": []}}), "{strategy}");
}

async fn rbac_and_bounds_apply_to_filters(strategy: &str) {
    let (t, mut client, _) = two_tenants(
        strategy,
        "[rbac]\n\"Organization.subscriptionTier\" = [\"admin\"]\n\"Task.status\" = [\"admin\"]\n[limits]\nmax_list_length = 3\nmax_fields = 12\nmax_depth = 4\n",
    )
    .await;
    client.set_token(Some(t.token("tenant_a", &["viewer"]).expect("token")));
    let q = "query($w: OrganizationWhereInput) { organizations(where: $w) { name } }";
    for (w, at) in [
        (
            json!({"subscriptionTier": {"eq": "pro"}}),
            "where.subscriptionTier` filters on `Organization.subscriptionTier",
        ),
        (
            json!({"_or": [{"name": {"eq": "x"}}, {"subscriptionTier": {"eq": "pro"}}]}),
            "where._or.1.subscriptionTier` filters on `Organization.subscriptionTier",
        ),
        (
            json!({"projects": {"tasks": {"status": {"eq": "done"}}}}),
            "where.projects.tasks.status` filters on `Task.status",
        ),
    ] {
        let r = client
            .execute_with(q, json!({ "w": w }))
            .await
            .expect("send");
        assert_unreadable(
            &r,
            &format!("`{at}`, which you are not allowed to read"),
            strategy,
        );
    }
    client.set_token(Some(t.token("tenant_a", &["admin"]).expect("token")));
    assert_eq!(
        names(&client, json!({"subscriptionTier": {"eq": "pro"}})).await,
        ["Acme Corp"]
    );

    // Bounds: `in` lists (max_list_length), nesting (max_depth), entries (what max_fields leaves
    // after the selection's fields).
    let r = client
        .execute_with(q, json!({"w": {"name": {"in": ["a", "b", "c", "d"]}}}))
        .await
        .expect("send");
    assert_eq!(
        (code(&r.json), r.json["errors"][0]["message"].as_str()),
        ("BAD_USER_INPUT", Some("`where.name.in` holds a list of 4 items; at most 3 are accepted ([limits] max_list_length)")),
        "{strategy}: {}",
        r.text
    );
    let r = client
        .execute_with(
            q,
            json!({"w": {"_not": {"_not": {"_not": {"_not": {"name": {"eq": "x"}}}}}}}),
        )
        .await
        .expect("send");
    assert_eq!(code(&r.json), "QUERY_TOO_COMPLEX", "{strategy}: {}", r.text);
    assert!(r.text.contains("[limits] max_depth"), "{}", r.text);
    let many: serde_json::Map<String, Value> = [
        "eq",
        "neq",
        "gt",
        "gte",
        "lt",
        "lte",
        "like",
        "ilike",
        "contains",
        "icontains",
        "startswith",
    ]
    .iter()
    .map(|op| ((*op).to_owned(), json!("x")))
    .collect();
    let r = client
        .execute_with(q, json!({"w": {"name": many}}))
        .await
        .expect("send");
    assert_eq!(code(&r.json), "QUERY_TOO_COMPLEX", "{strategy}: {}", r.text);
    assert!(r.text.contains("[limits] max_fields"), "{}", r.text);
    // Unknown fields and operators are validation errors naming them.
    let r = send(
        &client,
        r#"{ organizations(where: {nmae: {eq: "x"}}) { name } }"#,
    )
    .await;
    assert_eq!(code(&r.json), "GRAPHQL_VALIDATION_FAILED", "{}", r.text);
    assert!(r.text.contains("nmae"), "{}", r.text);
    let r = client
        .execute_with(q, json!({"w": {"name": {"equals": "x"}}}))
        .await
        .expect("send");
    assert!(
        r.json["data"].is_null() && r.text.contains("equals"),
        "{strategy}: {}",
        r.text
    );
}
