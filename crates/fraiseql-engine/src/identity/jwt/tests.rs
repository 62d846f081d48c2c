use fraiseql_config::Profile;
use std::path::PathBuf;

use fraiseql_config::{AuthConfig, JwtAlgorithm};

use super::*;

fn hs() -> AuthConfig {
    AuthConfig {
        required: true,
        algorithm: JwtAlgorithm::Hs256,
        secret: Some("a-test-secret-of-enough-length".into()),
        public_key: None,
        private_key: None,
        jwks: None,
        key_id: None,
        issuer: Some("fraiseql".into()),
        audience: Some("fraiseql".into()),
        tenant_claim: "tenant_id".into(),
        roles_claim: "roles".into(),
        tenants_claim: Some("tenants".into()),
        leeway_secs: 0,
        token_ttl_secs: 60,
    }
}

fn b64(s: &str) -> String {
    use base64_like::encode;
    encode(s.as_bytes())
}

/// Minimal unpadded base64url, to forge tokens in tests without another dependency.
mod base64_like {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pub fn encode(b: &[u8]) -> String {
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[test]
fn issued_tokens_verify_and_carry_tenant_and_roles() {
    let c = hs();
    let t = issue(
        &c,
        Profile::Production,
        "acme_corp",
        &["admin".into()],
        None,
    )
    .expect("issue");
    let id = Verifier::new(&c, Profile::Production)
        .expect("verifier")
        .verify(&t)
        .expect("valid");
    assert_eq!(id.tenant.as_deref(), Some("acme_corp"));
    assert_eq!(&*id.roles, ["admin".to_owned()]);
}

#[test]
fn another_secret_is_refused() {
    let mut other = hs();
    other.secret = Some("another-secret-of-enough-length".into());
    let t = issue(&other, Profile::Production, "acme_corp", &[], None).expect("issue");
    assert!(matches!(
        Verifier::new(&hs(), Profile::Production)
            .expect("v")
            .verify(&t),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn alg_none_is_refused() {
    let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
    let body =
        b64(r#"{"tenant_id":"acme_corp","exp":99999999999,"iss":"fraiseql","aud":"fraiseql"}"#);
    let t = format!("{header}.{body}.");
    assert!(matches!(
        Verifier::new(&hs(), Profile::Production)
            .expect("v")
            .verify(&t),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn expired_wrong_issuer_and_audience_are_refused() {
    let v = Verifier::new(&hs(), Profile::Production).expect("v");
    let refusal = |t: &str| v.verify(t).expect_err("refused").to_string();
    let mut wrong_iss = hs();
    wrong_iss.issuer = Some("someone-else".into());
    assert_eq!(
        refusal(&issue(&wrong_iss, Profile::Production, "a", &[], None).expect("t")),
        "invalid token: InvalidIssuer"
    );
    let mut wrong_aud = hs();
    wrong_aud.audience = Some("other-api".into());
    assert_eq!(
        refusal(&issue(&wrong_aud, Profile::Production, "a", &[], None).expect("t")),
        "invalid token: InvalidAudience"
    );
    // Expired an hour ago (no waiting on the clock).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": "fraiseql", "aud": "fraiseql", "tenant_id": "a",
        "iat": now - 7200, "exp": now - 3600,
    });
    let expired = sign(&hs(), claims.as_object().expect("object")).expect("t");
    assert_eq!(refusal(&expired), "invalid token: ExpiredSignature");
}

#[test]
fn es256_with_pem_keys_and_no_hs_confusion() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/identity/jwt/testdata");
    let es = AuthConfig {
        algorithm: JwtAlgorithm::Es256,
        secret: None,
        public_key: Some(dir.join("es256-public.pem")),
        private_key: Some(dir.join("es256-private.pem")),
        ..hs()
    };
    let t = issue(
        &es,
        Profile::Production,
        "acme_corp",
        &["viewer".into()],
        None,
    )
    .expect("issue");
    let v = Verifier::new(&es, Profile::Production).expect("verifier");
    assert_eq!(&*v.verify(&t).expect("valid").roles, ["viewer".to_owned()]);
    // An HS256 token signed with the public key's bytes as the secret: the classic confusion.
    let public = std::fs::read_to_string(dir.join("es256-public.pem")).expect("pem");
    let confused = AuthConfig {
        secret: Some(public),
        ..hs()
    };
    let t = issue(&confused, Profile::Production, "acme_corp", &[], None).expect("issue");
    assert_eq!(
        v.verify(&t).expect_err("refused").to_string(),
        "invalid token: InvalidAlgorithm"
    );
}

#[test]
fn rs256_with_pem_keys() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/identity/jwt/testdata");
    let rs = AuthConfig {
        algorithm: JwtAlgorithm::Rs256,
        secret: None,
        public_key: Some(dir.join("rs256-public.pem")),
        private_key: Some(dir.join("rs256-private.pem")),
        ..hs()
    };
    let t = issue(
        &rs,
        Profile::Production,
        "acme_corp",
        &["admin".into()],
        None,
    )
    .expect("issue");
    let id = Verifier::new(&rs, Profile::Production)
        .expect("verifier")
        .verify(&t)
        .expect("valid");
    assert_eq!(id.tenant.as_deref(), Some("acme_corp"));
    // An ES256 token is refused by an RS256 verifier: the algorithm is the config's, not the token's.
    let es = AuthConfig {
        algorithm: JwtAlgorithm::Es256,
        secret: None,
        public_key: Some(dir.join("es256-public.pem")),
        private_key: Some(dir.join("es256-private.pem")),
        ..hs()
    };
    let t = issue(&es, Profile::Production, "acme_corp", &[], None).expect("issue");
    assert_eq!(
        Verifier::new(&rs, Profile::Production)
            .expect("verifier")
            .verify(&t)
            .expect_err("refused")
            .to_string(),
        "invalid token: InvalidAlgorithm"
    );
}

#[test]
fn jwks_keys_are_selected_by_kid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/identity/jwt/testdata");
    let signer = AuthConfig {
        algorithm: JwtAlgorithm::Es256,
        secret: None,
        private_key: Some(dir.join("es256-private.pem")),
        public_key: None,
        key_id: Some("test-es256".into()),
        ..hs()
    };
    let verifier = AuthConfig {
        jwks: Some(dir.join("es256-jwks.json")),
        private_key: None,
        ..signer.clone()
    };
    let v = Verifier::new(&verifier, Profile::Production).expect("verifier from JWKS");
    let t = issue(&signer, Profile::Production, "acme_corp", &[], None).expect("issue");
    assert_eq!(
        v.verify(&t).expect("valid").tenant.as_deref(),
        Some("acme_corp")
    );
    let unknown = AuthConfig {
        key_id: Some("rotated-away".into()),
        ..signer
    };
    let t = issue(&unknown, Profile::Production, "acme_corp", &[], None).expect("issue");
    assert!(matches!(v.verify(&t), Err(AuthError::Invalid(m)) if m.contains("unknown key id")));
}

fn claims(extra: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let now = now_secs();
    let mut m = serde_json::json!({
        "tenant_id": "acme_corp", "roles": ["admin"], "iss": "fraiseql", "aud": "fraiseql",
        "exp": now + 60, "iat": now,
    });
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() && k != "tenant_id" {
            m.as_object_mut().expect("object").remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    m.as_object().expect("object").clone()
}

#[test]
fn configured_issuer_and_audience_are_required_and_nbf_checked() {
    let c = hs();
    let v = Verifier::new(&c, Profile::Production).expect("v");
    let ok = sign(&c, &claims(serde_json::json!({}))).expect("sign");
    assert!(v.verify(&ok).is_ok());
    for (what, extra) in [
        ("no iss", serde_json::json!({"iss": null})),
        ("no aud", serde_json::json!({"aud": null})),
        ("no exp", serde_json::json!({"exp": null})),
        ("numeric iss", serde_json::json!({"iss": 42})),
        ("iss list", serde_json::json!({"iss": ["fraiseql"]})),
        (
            "nbf in the future",
            serde_json::json!({"nbf": now_secs() + 3600}),
        ),
        (
            "tenants not a list",
            serde_json::json!({"tenants": "acme_corp"}),
        ),
    ] {
        let t = sign(&c, &claims(extra)).expect("sign");
        assert!(
            matches!(v.verify(&t), Err(AuthError::Invalid(_))),
            "{what} must be refused"
        );
    }
    // Without a configured audience, `aud` is not needed.
    let mut open = hs();
    open.audience = None;
    let t = sign(&open, &claims(serde_json::json!({"aud": null}))).expect("sign");
    assert!(Verifier::new(&open, Profile::Production)
        .expect("v")
        .verify(&t)
        .is_ok());
}

#[test]
fn null_tenant_is_no_tenant_and_the_tenants_claim_is_read() {
    let c = hs();
    let v = Verifier::new(&c, Profile::Production).expect("v");
    let t = sign(&c, &claims(serde_json::json!({"tenant_id": null}))).expect("sign");
    let id = v.verify(&t).expect("valid");
    assert_eq!(id.tenant, None);
    assert!(id.tenants.is_empty() && id.authenticated);
    let t = sign(
        &c,
        &claims(serde_json::json!({"tenant_id": null, "tenants": ["a", "b"]})),
    )
    .expect("sign");
    assert_eq!(v.verify(&t).expect("valid").tenants, ["a", "b"]);
}

#[test]
fn development_tokens_are_marked_and_refused_in_production() {
    let c = hs();
    let dev = issue(
        &c,
        Profile::Development,
        "acme_corp",
        &["admin".into()],
        None,
    )
    .expect("t");
    let prod = issue(
        &c,
        Profile::Production,
        "acme_corp",
        &["admin".into()],
        None,
    )
    .expect("t");
    let in_production = Verifier::new(&c, Profile::Production).expect("v");
    assert_eq!(
        in_production.verify(&dev).map(|_| ()),
        Err(AuthError::Invalid(
            "a development token (issued under the development profile) is refused by a production server".into()
        ))
    );
    assert!(in_production.verify(&prod).is_ok());
    let in_development = Verifier::new(&c, Profile::Development).expect("v");
    assert!(in_development.verify(&dev).is_ok());
    assert!(in_development.verify(&prod).is_ok());
}
