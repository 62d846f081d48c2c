use std::sync::Arc;

use super::*;
use crate::tenancy::registry::{Derived, TenantStatus};

fn record(key: &str, tier: &str) -> TenantRecord {
    TenantRecord {
        key: key.to_owned(),
        id: uuid::Uuid::nil(),
        strategy: "row_level".to_owned(),
        server: String::new(),
        database: String::new(),
        schema: "public".to_owned(),
        role: String::new(),
        password: String::new(),
        login_role: String::new(),
        login_password: String::new(),
        status: TenantStatus::Active,
        tier: tier.to_owned(),
        derived: Derived::default(),
    }
    .derive()
}

fn quotas(tiers: &str) -> (Quotas, Arc<Metrics>) {
    let config = fraiseql_config::parse_str(
        &format!("[databases.tenant]\ntype = \"postgresql\"\nurl = \"postgres://x/y\"\n{tiers}"),
        "t.toml",
        std::path::Path::new("/"),
        &|_| None,
    )
    .expect("config");
    let metrics = Arc::new(Metrics::default());
    (Quotas::new(Tiers::new(&config), metrics.clone()), metrics)
}

#[test]
fn over_the_rate_a_request_is_refused_with_when_to_retry() {
    let (q, metrics) = quotas("[tiers.free]\nrequests_per_second = 2\nburst = 3\n");
    let rec = record("acme_corp", "free");
    let m = metrics.tenant("acme_corp");
    for _ in 0..3 {
        q.admit(&rec, &m).expect("within the burst");
    }
    let refusal = q.admit(&rec, &m).expect_err("over");
    assert_eq!(refusal.limit, Limit::Requests);
    assert_eq!(refusal.retry_after, 1);
    assert_eq!(
        refusal.message,
        "tenant acme_corp is over its plan's rate (2 requests/s); retry in 1s"
    );
    assert_eq!(
        metrics.sum(
            "fraiseql_tenant_rate_limited",
            Some(r#"tenant_id="acme_corp",limit="requests""#)
        ),
        1.0
    );
    // Another tier's tenant is not affected; a tier not listed (no default) is not limited.
    let other = record("beta", "enterprise");
    for _ in 0..100 {
        let a = q.admit(&other, &m).expect("unlimited");
        assert!(a.headers.is_empty());
    }
    let used = q.take_usage();
    let acme = used.iter().find(|u| u.key == "acme_corp").expect("acme");
    assert_eq!((acme.requests, acme.rate_limited), (3, 1));
    assert!(q.take_usage().is_empty(), "taken");
}

#[test]
fn requests_in_flight_beyond_the_plan_are_refused_until_one_ends() {
    let (q, metrics) = quotas("[tiers.default]\nmax_concurrent = 2\n");
    let rec = record("acme_corp", "free");
    let m = metrics.tenant("acme_corp");
    let a = q.admit(&rec, &m).expect("1");
    let _b = q.admit(&rec, &m).expect("2");
    let refusal = q.admit(&rec, &m).expect_err("3");
    assert_eq!(refusal.limit, Limit::Concurrent);
    assert_eq!(
        refusal.message,
        "tenant acme_corp has 2 requests in flight, the most its plan allows at once; retry in 1s"
    );
    drop(a);
    q.admit(&rec, &m).expect("one ended");
}

#[test]
fn a_refused_request_gives_its_place_in_flight_back() {
    let (q, metrics) =
        quotas("[tiers.free]\nrequests_per_second = 1\nburst = 1\nmax_concurrent = 1\n");
    let rec = record("acme_corp", "free");
    let m = metrics.tenant("acme_corp");
    drop(q.admit(&rec, &m).expect("first"));
    assert_eq!(q.admit(&rec, &m).expect_err("rate").limit, Limit::Requests);
    // Still over the rate, not over the concurrency: the refused one holds no place.
    assert_eq!(q.admit(&rec, &m).expect_err("rate").limit, Limit::Requests);
}

#[test]
fn mutations_have_a_rate_of_their_own() {
    let (q, metrics) = quotas("[tiers.free]\nmutations_per_second = 1\n");
    let rec = record("acme_corp", "free");
    let m = metrics.tenant("acme_corp");
    q.admit_mutation(&rec, &m).expect("first");
    let refusal = q.admit_mutation(&rec, &m).expect_err("second");
    assert_eq!(refusal.limit, Limit::Mutations);
    assert_eq!(
        refusal.message,
        "tenant acme_corp is over its plan's rate of mutations (1/s); retry in 1s"
    );
    q.admit(&rec, &m).expect("queries are not mutations");
}

#[test]
fn other_instances_admissions_are_paid_for_here() {
    let (q, metrics) = quotas("[tiers.free]\nrequests_per_second = 10\nburst = 10\n");
    q.reporting.store(true, Ordering::Relaxed);
    let rec = record("acme_corp", "free");
    let m = metrics.tenant("acme_corp");
    q.admit(&rec, &m).expect("first");
    q.admit(&rec, &m).expect("second");
    let spent = q.take_unsent();
    assert_eq!(spent, vec![(Arc::from("acme_corp"), 2, 0)]);
    assert!(q.take_unsent().is_empty(), "reported once");
    // Another instance admitted 8: nothing is left here.
    q.debit("acme_corp", 8, 0);
    assert_eq!(q.admit(&rec, &m).expect_err("paid").limit, Limit::Requests);
    // A tenant never served here is not created by a report.
    q.debit("nobody", 5, 0);
    assert!(q.find("nobody").is_none());
}

#[test]
fn rows_are_the_objects_of_the_answer_outside_strings() {
    assert_eq!(count_rows(br#"[{"a":1},{"a":{"b":2}}]"#), 3);
    assert_eq!(count_rows(br#"{"name":"{not a row}","x":"\"{"}"#), 1);
    assert_eq!(count_rows(b"null"), 0);
    // Escaped backslashes end before the quote; a text cut inside a string or an escape stops.
    assert_eq!(count_rows(br#"[{"a":"x\\\\"},{"b":"\\\"{"}]"#), 2);
    assert_eq!(count_rows(br#"{"a":"{"#), 1);
    assert_eq!(count_rows(br#"{"a":"\\"#), 1);
    // The same count as a byte-at-a-time reading, on every cut of a text with every case.
    let text = br#"{"s" : "a{b\\"c\\\\", "n" : [{"x" : "}{"}, {}], "e" : "\\u007b"}"#;
    for end in 0..=text.len() {
        assert_eq!(
            count_rows(&text[..end]),
            byte_at_a_time(&text[..end]),
            "{end}"
        );
    }
}

fn byte_at_a_time(json: &[u8]) -> u64 {
    let (mut rows, mut in_string, mut escaped) = (0, false, false);
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'{' {
            rows += 1;
        }
    }
    rows
}
