//! The admin API (`[admin] listen`) of a running server process, end to end: its token, a
//! customer signed up over HTTP (provisioned in the background), queried, suspended, resumed,
//! moved to another tier, backed up, listed with its usage; errors as JSON with codes; the
//! OpenAPI document valid.

use std::time::Duration;

use fraiseql_testing::{http, HttpAnswer, ServerProcess};
use serde_json::{json, Value};

use crate::harness::{eventually, post_as, world_with};

const TOKEN: &str = "admin-token-for-tests-0123456789-abcdef";

struct Admin {
    port: u16,
}

impl Admin {
    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> HttpAnswer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http(self.port, method, path, &headers, body)
            .await
            .expect("the admin listener answers")
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> HttpAnswer {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.send(method, path, Some(TOKEN), &body).await
    }
}

/// A GraphQL request of `tenant` with a token of its own (so a suspension is told apart from
/// an unknown tenant).
async fn graphql(port: u16, token: &str, tenant: &str, query: &str) -> HttpAnswer {
    let body = json!({ "query": query }).to_string();
    post_as(port, tenant, token, &body).await
}

fn error(a: &HttpAnswer) -> (u16, String) {
    (
        a.status,
        a.json()["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// The OpenAPI document as a validator reads it (`openapi-spec-validator`, installed by
/// scripts/test.sh in the Python of FRAISEQL_PYTHON).
fn assert_valid_openapi(doc: &str) {
    let path = std::env::temp_dir().join(format!("fraiseql-openapi-{}.json", std::process::id()));
    std::fs::write(&path, doc).expect("write");
    let python = std::env::var("FRAISEQL_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg("import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')")
        .arg(&path)
        .output()
        .expect("run python (scripts/test.sh installs openapi-spec-validator)");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "valid",
        "openapi-spec-validator missing, or the document is invalid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_admin_api_runs_a_customer_from_sign_up_to_a_new_tier() {
    let t = world_with(
        "database_per_tenant",
        "[tiers.free]\nrequests_per_second = 1000\n[tiers.pro]\nrequests_per_second = 5000\n",
    )
    .await;
    // The server checks its schema against an active tenant at start-up.
    t.create_tenant("first").await.expect("first tenant");
    let port = ServerProcess::free_port().expect("port");
    let admin = Admin {
        port: ServerProcess::free_port().expect("port"),
    };
    let backups = std::env::temp_dir().join(format!("fraiseql-admin-backups-{port}"));
    let path = std::env::temp_dir().join(format!("fraiseql-admin-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            "[server]\nport = {port}\n{}\n[admin]\nlisten = \"127.0.0.1:{}\"\ntoken = \"{TOKEN}\"\nbackup_dir = \"{}\"\n",
            t.config_text,
            admin.port,
            backups.display()
        ),
    )
    .expect("config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_saas-server"));
    cmd.arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _server = ServerProcess::start(cmd, port).await.expect("server");

    // The token: required, and only the admin's.
    let none = admin.send("GET", "/admin/tenants", None, "").await;
    assert_eq!(
        error(&none),
        (401, "UNAUTHORIZED".to_owned()),
        "{}",
        none.body
    );
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let jwt = t.token("first", &["admin"]).expect("token");
    let wrong = admin.send("GET", "/admin/tenants", Some(&jwt), "").await;
    assert_eq!(
        wrong.json(),
        json!({"error": {"code": "UNAUTHORIZED", "message": "the bearer token is not the admin token"}})
    );
    let doc = admin.send("GET", "/admin/openapi.json", None, "").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    assert_valid_openapi(&doc.body);

    // Sign-up: 202 at once, provisioned in the background; a repeat is the same tenant.
    let created = admin
        .call(
            "POST",
            "/admin/tenants",
            json!({"key": "acme_corp", "tier": "free"}),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    assert_eq!(created.header("location"), Some("/admin/tenants/acme_corp"));
    assert_eq!(created.json()["status"], "provisioning");
    let again = admin
        .call("POST", "/admin/tenants", json!({"key": "acme_corp"}))
        .await;
    assert!(matches!(again.status, 200 | 202), "{}", again.body);
    assert_eq!(again.json()["key"], "acme_corp");
    eventually(
        "acme_corp is provisioned",
        Duration::from_secs(60),
        || async {
            let a = admin
                .call("GET", "/admin/tenants/acme_corp", Value::Null)
                .await;
            match a.json()["status"].as_str() {
                Some("active") => Ok(()),
                _ => Err(a.body),
            }
        },
    )
    .await;
    let repeated = admin
        .call(
            "POST",
            "/admin/tenants",
            json!({"key": "acme_corp", "tier": "free"}),
        )
        .await;
    assert_eq!(repeated.status, 200, "{}", repeated.body);
    assert_eq!(repeated.json()["status"], "active");
    let other_tier = admin
        .call(
            "POST",
            "/admin/tenants",
            json!({"key": "acme_corp", "tier": "pro"}),
        )
        .await;
    assert_eq!(error(&other_tier), (409, "TENANT_EXISTS".to_owned()));

    // Queried: a write and a read of the new tenant, counted in its usage.
    let acme = t.token("acme_corp", &["admin"]).expect("token");
    let made = graphql(
        port,
        &acme,
        "acme_corp",
        "mutation { createOrganization(name: \"Acme\") { name } }",
    )
    .await;
    assert_eq!(
        made.json(),
        json!({"data": {"createOrganization": {"name": "Acme"}}})
    );
    let read = graphql(port, &acme, "acme_corp", "{ organizations { name } }").await;
    assert_eq!(
        read.json(),
        json!({"data": {"organizations": [{"name": "Acme"}]}})
    );
    assert_eq!(read.header("x-ratelimit-limit"), Some("1000"));
    let listed = eventually(
        "usage reaches the registry",
        Duration::from_secs(30),
        || async {
            let a = admin.call("GET", "/admin/tenants", Value::Null).await;
            let v = a.json();
            let acme = v["tenants"]
                .as_array()
                .and_then(|all| all.iter().find(|t| t["key"] == "acme_corp"))
                .cloned()
                .unwrap_or(Value::Null);
            match (
                acme["usage"]["requests"].as_i64(),
                acme["usage"]["rows"].as_i64(),
            ) {
                (Some(r), Some(w)) if r >= 2 && w >= 2 => Ok(acme),
                _ => Err(a.body),
            }
        },
    )
    .await;
    assert_eq!(listed["tier"], "free");
    assert_eq!(listed["strategy"], "database_per_tenant");
    assert_eq!(listed["usage"]["rate_limited"], 0);

    // Suspended: refused within 3 s; resumed: served again.
    let s = admin
        .call("POST", "/admin/tenants/acme_corp/suspend", Value::Null)
        .await;
    assert_eq!(
        (s.status, s.json()["status"].clone()),
        (200, json!("suspended"))
    );
    eventually(
        "the server refuses acme_corp",
        Duration::from_secs(10),
        || async {
            let a = graphql(port, &acme, "acme_corp", "{ __typename }").await;
            match (
                a.status,
                a.json()["errors"][0]["extensions"]["code"].as_str(),
            ) {
                (503, Some("TENANT_SUSPENDED")) => Ok(()),
                _ => Err(a.body),
            }
        },
    )
    .await;
    let r = admin
        .call("POST", "/admin/tenants/acme_corp/resume", Value::Null)
        .await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("active"))
    );
    eventually(
        "the server serves acme_corp again",
        Duration::from_secs(10),
        || async {
            let a = graphql(port, &acme, "acme_corp", "{ __typename }").await;
            match a.status {
                200 => Ok(()),
                _ => Err(a.body),
            }
        },
    )
    .await;

    // A new tier, applied by the running server.
    let tier = admin
        .call(
            "PUT",
            "/admin/tenants/acme_corp/tier",
            json!({"tier": "pro"}),
        )
        .await;
    assert_eq!(
        (tier.status, tier.json()["tier"].clone()),
        (200, json!("pro"))
    );
    eventually(
        "the server applies the pro plan",
        Duration::from_secs(10),
        || async {
            let a = graphql(port, &acme, "acme_corp", "{ __typename }").await;
            match a.header("x-ratelimit-limit") {
                Some("5000") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let gold = admin
        .call(
            "PUT",
            "/admin/tenants/acme_corp/tier",
            json!({"tier": "gold"}),
        )
        .await;
    assert_eq!(
        error(&gold),
        (422, "UNKNOWN_TIER".to_owned()),
        "{}",
        gold.body
    );

    // A backup, into [admin] backup_dir.
    let b = admin
        .call("POST", "/admin/tenants/acme_corp/backup", Value::Null)
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    let archive = std::path::PathBuf::from(b.json()["path"].as_str().expect("path"));
    assert!(archive.starts_with(&backups), "{}", archive.display());
    assert_eq!(
        std::fs::metadata(&archive).expect("archive").len(),
        b.json()["bytes"].as_u64().expect("bytes")
    );

    // Errors: JSON with codes.
    let cases = [
        ("GET", "/admin/tenants/nobody", "", (404, "NOT_FOUND")),
        (
            "POST",
            "/admin/tenants/nobody/suspend",
            "",
            (404, "NOT_FOUND"),
        ),
        ("GET", "/admin/tenants/Not-A-Key", "", (422, "INVALID_KEY")),
        (
            "POST",
            "/admin/tenants",
            r#"{"key": "Not A Key"}"#,
            (422, "INVALID_KEY"),
        ),
        (
            "POST",
            "/admin/tenants",
            r#"{"key": "#,
            (400, "BAD_REQUEST"),
        ),
        (
            "POST",
            "/admin/tenants",
            r#"{"name": "x"}"#,
            (400, "BAD_REQUEST"),
        ),
        ("DELETE", "/admin/tenants", "", (405, "METHOD_NOT_ALLOWED")),
        ("GET", "/admin/nothing", "", (404, "NOT_FOUND")),
    ];
    for (method, route, body, want) in cases {
        let a = admin.send(method, route, Some(TOKEN), body).await;
        assert_eq!(
            error(&a),
            (want.0, want.1.to_owned()),
            "{method} {route}: {}",
            a.body
        );
    }
    let _ = std::fs::remove_dir_all(&backups);
    let _ = std::fs::remove_file(&path);
}
