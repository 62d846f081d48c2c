//! Trusted documents (`[security.trusted_documents]`, strict and permissive) and automatic
//! persisted queries, with the requests exactly as the clients send them:
//!
//! - Apollo Client's `createPersistedQueryLink` (`@apollo/client/link/persisted-queries`): the
//!   first request carries `operationName`, `variables` and `extensions.persistedQuery
//!   {version: 1, sha256Hash}` and no `query` member at all (`includeQuery: false`); on
//!   `PersistedQueryNotFound` it sends the same with `query` (the printed document) added, over
//!   POST; with `useGETForHashedQueries` the first request is a GET with `operationName`,
//!   `variables` and `extensions` as JSON in the URL. Its HttpLink sends `accept:
//!   application/graphql-response+json,application/json;q=0.9`.
//! - GraphQL over HTTP's persisted documents (GraphQL Codegen's client preset): `documentId:
//!   "sha256:<hex>"` in the body, or in the URL of a GET.

use fraiseql_testing::TestClient;
use serde_json::{json, Value};

use crate::harness::{assert_answered, code, setup_with, Saas};

/// The `accept` header Apollo Client's HttpLink sends.
const APOLLO_ACCEPT: &str = "application/graphql-response+json,application/json;q=0.9";

/// What Apollo Client's `print` makes of `gql\`query Orgs($limit: Int) { organizations(limit:
/// $limit) { name } }\``.
const ORGS: &str = "query Orgs($limit: Int) {\n  organizations(limit: $limit) {\n    name\n  }\n}";
const NAMES: &str = "query Names {\n  organizations {\n    id\n  }\n}";

fn sha256(text: &str) -> String {
    fraiseql::engine::document::manifest::sha256_hex(text)
}

/// A manifest file holding `docs`, removed when dropped.
struct ManifestFile(std::path::PathBuf);

impl ManifestFile {
    fn new(docs: &[&str]) -> Self {
        let documents: serde_json::Map<String, Value> = docs
            .iter()
            .map(|d| (sha256(d), Value::String((*d).to_owned())))
            .collect();
        let path = std::env::temp_dir().join(format!(
            "fraiseql-manifest-{}-{}.json",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let text = json!({"version": 1, "documents": documents}).to_string();
        std::fs::write(&path, text).expect("write manifest");
        Self(path)
    }

    fn config(&self, mode: &str, extra: &str) -> String {
        format!(
            "[security.trusted_documents]\nenabled = true\nmode = \"{mode}\"\nmanifest_path = \"{}\"\n{extra}",
            self.0.display()
        )
    }
}

impl Drop for ManifestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// POSTs `body` as Apollo Client does; (status, JSON).
async fn post(client: &TestClient, body: Value) -> (u16, Value) {
    let r = client
        .post_raw(
            "application/json",
            Some(APOLLO_ACCEPT),
            serde_json::to_vec(&body).expect("body"),
        )
        .await
        .expect("answer");
    (r.status, r.json)
}

/// Apollo Client's first request: the hash, no `query`.
fn hashed(name: &str, text: &str, variables: Value) -> Value {
    json!({
        "operationName": name,
        "variables": variables,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}
    })
}

/// Its retry after `PersistedQueryNotFound`: the same with `query`.
fn with_text(name: &str, text: &str, variables: Value) -> Value {
    let mut body = hashed(name, text, variables);
    body["query"] = Value::String(text.to_owned());
    body
}

fn names(v: &Value) -> usize {
    v["data"]["organizations"].as_array().map_or(0, Vec::len)
}

fn untrusted_count(s: &Saas) -> String {
    s.client
        .engine()
        .metrics()
        .render()
        .lines()
        .find(|l| l.starts_with("fraiseql_untrusted_documents_total"))
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn strict_trusted_documents_run_the_manifest_only() {
    let m = ManifestFile::new(&[ORGS]);
    let s = setup_with(&m.config("strict", "")).await;
    let id = sha256(ORGS);

    // By documentId (GraphQL over HTTP), with variables.
    let (status, v) = post(
        &s.client,
        json!({"documentId": format!("sha256:{id}"), "variables": {"limit": 2}}),
    )
    .await;
    assert_eq!((status, names(&v)), (200, 2), "{v}");
    // A bare hash is an id too.
    let (status, v) = post(&s.client, json!({"documentId": id})).await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
    // By Apollo's persistedQuery hash, exactly as its link sends it.
    let (status, v) = post(&s.client, hashed("Orgs", ORGS, json!({"limit": 1}))).await;
    assert_eq!((status, names(&v)), (200, 1), "{v}");
    // The manifest's text sent as text runs (clients that send both keep working).
    let (status, v) = post(&s.client, json!({"query": ORGS})).await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
    let (status, v) = post(&s.client, with_text("Orgs", ORGS, json!({}))).await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");

    // Any other text is refused before it is parsed.
    let (status, v) = post(&s.client, json!({"query": NAMES})).await;
    assert_eq!((status, code(&v)), (400, "FORBIDDEN_QUERY"), "{v}");
    assert_eq!(
        v["errors"][0]["message"],
        "this server runs only trusted documents: send the document's id (documentId) from the manifest"
    );
    assert!(v.get("data").is_none(), "{v}");
    // An APQ registration is no way around the manifest.
    let (status, v) = post(&s.client, with_text("Names", NAMES, json!({}))).await;
    assert_eq!((status, code(&v)), (400, "FORBIDDEN_QUERY"), "{v}");
    let (status, v) = post(&s.client, hashed("Names", NAMES, json!({}))).await;
    assert_eq!((status, code(&v)), (400, "DOCUMENT_NOT_FOUND"), "{v}");
    // An unknown id.
    let unknown = "0".repeat(64);
    let (status, v) = post(
        &s.client,
        json!({"documentId": format!("sha256:{unknown}")}),
    )
    .await;
    assert_eq!((status, code(&v)), (400, "DOCUMENT_NOT_FOUND"), "{v}");
    assert_eq!(
        v["errors"][0]["message"],
        format!("no trusted document has the id sha256:{unknown}")
    );
    // Legacy application/json: a request error is 200, as for other request errors.
    let r = s
        .client
        .post_raw(
            "application/json",
            Some("application/json"),
            json!({"query": NAMES}).to_string().into_bytes(),
        )
        .await
        .expect("answer");
    assert_eq!((r.status, code(&r.json)), (200, "FORBIDDEN_QUERY"));
    // A malformed id is a bad request under any media type.
    let r = s
        .client
        .post_raw(
            "application/json",
            Some("application/json"),
            json!({"documentId": "sha256:xyz"}).to_string().into_bytes(),
        )
        .await
        .expect("answer");
    assert_answered(&r, 400, "BAD_REQUEST");
}

/// A GET naming the document by id: a short URL a cache can key on, answered with `Vary` on
/// what else the answer depends on.
#[tokio::test]
async fn a_trusted_document_over_get() {
    let m = ManifestFile::new(&[ORGS]);
    let s = setup_with(&m.config("strict", "")).await;
    let uri = format!(
        "/graphql?documentId=sha256%3A{}&variables=%7B%22limit%22%3A2%7D",
        sha256(ORGS)
    );
    let r = s.client.get(&uri, Some(APOLLO_ACCEPT)).await.expect("GET");
    assert_eq!((r.status, names(&r.json)), (200, 2), "{}", r.text);
    let vary: Vec<&str> = r
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        vary.contains(&"Accept, Authorization, X-Tenant-ID"),
        "{vary:?}"
    );
    let r = s
        .client
        .get(
            &format!(
                "/graphql?query={}",
                "%7B%20organizations%20%7B%20id%20%7D%20%7D"
            ),
            Some(APOLLO_ACCEPT),
        )
        .await
        .expect("GET");
    assert_answered(&r, 400, "FORBIDDEN_QUERY");
}

#[tokio::test]
async fn permissive_trusted_documents_run_anything_and_count_what_strict_would_refuse() {
    let m = ManifestFile::new(&[ORGS]);
    let s = setup_with(&m.config("permissive", "")).await;
    assert_eq!(untrusted_count(&s), "fraiseql_untrusted_documents_total 0");
    let (status, v) = post(
        &s.client,
        json!({"documentId": format!("sha256:{}", sha256(ORGS))}),
    )
    .await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
    let (status, v) = post(&s.client, json!({"query": ORGS})).await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
    assert_eq!(untrusted_count(&s), "fraiseql_untrusted_documents_total 0");
    // Text outside the manifest runs, and is counted.
    let (status, v) = post(&s.client, json!({"query": NAMES})).await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
    assert_eq!(untrusted_count(&s), "fraiseql_untrusted_documents_total 1");
    // Apollo's APQ keeps working beside the manifest (and is counted as untrusted).
    let (status, v) = post(&s.client, hashed("Names", NAMES, json!({}))).await;
    assert_eq!(
        (status, code(&v)),
        (200, "PERSISTED_QUERY_NOT_FOUND"),
        "{v}"
    );
    let (status, v) = post(&s.client, with_text("Names", NAMES, json!({}))).await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
    let (status, v) = post(&s.client, hashed("Names", NAMES, json!({}))).await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
    assert_eq!(untrusted_count(&s), "fraiseql_untrusted_documents_total 3");
    // A documentId names the manifest's documents (or registered ones) only.
    let (status, v) = post(&s.client, json!({"documentId": "1".repeat(64)})).await;
    assert_eq!((status, code(&v)), (400, "DOCUMENT_NOT_FOUND"), "{v}");
}

/// Apollo's protocol end to end, as `createPersistedQueryLink` drives it.
#[tokio::test]
async fn automatic_persisted_queries_round_trip() {
    let s = setup_with("").await;
    let vars = json!({"limit": 2});
    // 1. The hash alone: unknown. 200 whatever the media type: Apollo Client 3 would stop
    //    hashing for good after a 400.
    let (status, v) = post(&s.client, hashed("Orgs", ORGS, vars.clone())).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]})
    );
    // 2. Hash and text: checked, run and kept.
    let (status, v) = post(&s.client, with_text("Orgs", ORGS, vars.clone())).await;
    assert_eq!((status, names(&v)), (200, 2), "{v}");
    // 3. The hash alone now runs, over POST and over GET (`useGETForHashedQueries`).
    let (status, v) = post(&s.client, hashed("Orgs", ORGS, json!({"limit": 1}))).await;
    assert_eq!((status, names(&v)), (200, 1), "{v}");
    let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": sha256(ORGS)}});
    let uri = format!(
        "/graphql?operationName=Orgs&variables={}&extensions={}",
        urlencode(&json!({"limit": 3}).to_string()),
        urlencode(&extensions.to_string())
    );
    let r = s.client.get(&uri, Some(APOLLO_ACCEPT)).await.expect("GET");
    assert_eq!((r.status, names(&r.json)), (200, 3), "{}", r.text);
    // A mutation's hash is no way to run it over GET, even once registered.
    let create =
        "mutation Create($name: String!) {\n  createOrganization(name: $name) {\n    id\n  }\n}";
    let (status, v) = post(
        &s.client,
        with_text("Create", create, json!({"name": "Hashed"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("data").is_some(), "executed: {v}");
    let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": sha256(create)}});
    let uri = format!(
        "/graphql?operationName=Create&variables={}&extensions={}",
        urlencode(&json!({"name": "Over GET"}).to_string()),
        urlencode(&extensions.to_string())
    );
    let r = s.client.get(&uri, Some(APOLLO_ACCEPT)).await.expect("GET");
    assert_eq!(r.status, 405, "{}", r.text);

    // A text that does not hash to its id: 400, never stored.
    let mut body = hashed("Orgs", NAMES, json!({}));
    body["query"] = Value::String(ORGS.to_owned());
    let (status, v) = post(&s.client, body).await;
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
    assert_eq!(
        v["errors"][0]["message"],
        "provided sha does not match query"
    );
    let (status, v) = post(&s.client, hashed("Names", NAMES, json!({}))).await;
    assert_eq!(
        (status, code(&v)),
        (200, "PERSISTED_QUERY_NOT_FOUND"),
        "{v}"
    );
    // An invalid document is not kept either.
    let bad = "query Bad {\n  organizations {\n    nope\n  }\n}";
    let (_, v) = post(&s.client, with_text("Bad", bad, json!({}))).await;
    assert_eq!(code(&v), "GRAPHQL_VALIDATION_FAILED", "{v}");
    let (_, v) = post(&s.client, hashed("Bad", bad, json!({}))).await;
    assert_eq!(code(&v), "PERSISTED_QUERY_NOT_FOUND", "{v}");
    assert!(s.client.engine().persisted().apq_bytes() > 0);
}

/// The store is bounded in bytes: a document heavier than its share is run but not kept; with
/// `apq = false` clients are told to stop hashing.
#[tokio::test]
async fn the_apq_store_is_bounded_and_can_be_turned_off() {
    let s = setup_with("[security]\napq_cache_bytes = 6400\n").await;
    // 6400 / 64 = 100 bytes per entry at most: ORGS (~70 bytes + bookkeeping) is over it.
    let (_, v) = post(&s.client, with_text("Orgs", ORGS, json!({}))).await;
    assert_eq!(names(&v), 3, "{v}");
    let (_, v) = post(&s.client, hashed("Orgs", ORGS, json!({}))).await;
    assert_eq!(code(&v), "PERSISTED_QUERY_NOT_FOUND", "{v}");
    assert_eq!(s.client.engine().persisted().apq_bytes(), 0);

    let s = setup_with("[security]\napq = false\n").await;
    let (status, v) = post(&s.client, hashed("Orgs", ORGS, json!({}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"errors": [{"message": "PersistedQueryNotSupported", "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"}}]})
    );
    // The link then sends the text alone.
    let (status, v) = post(
        &s.client,
        json!({"operationName": "Orgs", "query": ORGS, "variables": {}}),
    )
    .await;
    assert_eq!((status, names(&v)), (200, 3), "{v}");
}

/// A manifest whose id does not match its document stops the server at start-up.
#[tokio::test]
async fn a_manifest_with_a_wrong_id_is_refused_at_start_up() {
    let path = std::env::temp_dir().join(format!(
        "fraiseql-bad-manifest-{}.json",
        uuid::Uuid::new_v4()
    ));
    std::fs::write(
        &path,
        json!({"version": 1, "documents": {"a".repeat(64): ORGS}}).to_string(),
    )
    .expect("write");
    let db = fraiseql_testing::TestDatabase::migrated(
        &crate::harness::example_dir().join("migrations/tenant"),
    )
    .await
    .expect("db");
    let config = crate::harness::config_for(
        &db,
        &format!(
            "[security.trusted_documents]\nenabled = true\nmanifest_path = \"{}\"\n",
            path.display()
        ),
    );
    let err = match fraiseql::Engine::from_config(config) {
        Ok(_) => panic!("a wrong id must be refused"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_file(&path);
    assert!(
        err.contains("is not valid") && err.contains(&format!("hashes to {}", sha256(ORGS))),
        "{err}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
