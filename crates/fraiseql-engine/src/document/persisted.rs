//! The pipeline's first document step: which text a request runs. A request names a document
//! by id (`documentId: "sha256:<hex>"`, GraphQL over HTTP's persisted documents, or Apollo's
//! `extensions.persistedQuery.sha256Hash`), sends its text (`query`), or both.
//!
//! - Trusted documents (`[security.trusted_documents]`): ids are looked up in the manifest.
//!   Strict mode runs nothing else: a text whose SHA-256 is not in the manifest is
//!   `FORBIDDEN_QUERY` (one that is runs, so clients that send both keep working), an unknown id
//!   `DOCUMENT_NOT_FOUND`. Permissive mode runs any text and counts those outside the manifest
//!   (`fraiseql_untrusted_documents_total`), so a team sees what strict mode would refuse.
//! - Automatic persisted queries (`[security] apq`, not under strict mode), Apollo's protocol: an
//!   unknown hash sent alone is `PersistedQueryNotFound` and the client sends hash and text; the
//!   text must hash to the id (else 400), and once it validated it is kept (bounded in bytes) so
//!   the hash alone works next time. The store is keyed by the text's own hash, so an entry is
//!   always what its key names, whoever stored it: no tenant can poison another's documents.

use std::ops::Deref;
use std::sync::Arc;

use fraiseql_config::{SecurityConfig, TrustedMode};

use super::manifest::{parse_id, sha256_hex, Manifest};
use super::{PreparedDocument, ADMISSION_FRACTION};
use crate::error::{ErrorCode, GraphqlError};
use crate::request::GraphqlRequest;
use crate::response::{Outcome, OutcomeKind};

/// What the persisted documents' store and the manifest answer.
pub struct PersistedDocuments {
    trusted: Option<(Manifest, TrustedMode)>,
    apq: Option<ApqStore>,
}

/// The text a request runs: its own, or a stored document.
#[derive(Debug)]
pub enum DocumentText<'r> {
    /// The request's `query`.
    Request(&'r str),
    /// The manifest's or the APQ store's document.
    Stored(Arc<str>),
}

impl Deref for DocumentText<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            DocumentText::Request(s) => s,
            DocumentText::Stored(s) => s,
        }
    }
}

/// A request's document, resolved.
#[derive(Debug)]
pub struct Resolved<'r> {
    /// The text to prepare.
    pub text: DocumentText<'r>,
    /// An APQ registration (hash and text sent together): kept once the text validates.
    pub register: Option<String>,
    /// The document is outside the manifest while permissive trusted documents are on.
    pub untrusted: bool,
}

/// How the request named its document.
enum Named {
    DocumentId(String),
    PersistedQuery(String),
}

impl Named {
    fn hex(&self) -> &str {
        match self {
            Named::DocumentId(h) | Named::PersistedQuery(h) => h,
        }
    }
}

/// Why a request's document is refused, and how to answer it over HTTP.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The HTTP treatment.
    pub kind: OutcomeKind,
    /// The error.
    pub error: GraphqlError,
}

impl From<Refusal> for Outcome {
    fn from(r: Refusal) -> Self {
        Outcome::request_error_of_kind(r.kind, vec![r.error])
    }
}

fn refuse(kind: OutcomeKind, code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        error: GraphqlError::new(code, message),
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    refuse(OutcomeKind::BadRequest, ErrorCode::BadRequest, message)
}

/// The id a request names: `documentId`, `extensions.persistedQuery`, or neither.
fn named(req: &GraphqlRequest) -> Result<Option<Named>, Refusal> {
    let pq = match req
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"))
    {
        None | Some(serde_json::Value::Null) => None,
        Some(pq) => {
            if pq.get("version").and_then(serde_json::Value::as_u64) != Some(1) {
                return Err(bad_request("Unsupported persisted query version"));
            }
            let hash = pq
                .get("sha256Hash")
                .and_then(serde_json::Value::as_str)
                .and_then(parse_id)
                .ok_or_else(|| {
                    bad_request("extensions.persistedQuery.sha256Hash must be 64 hex digits")
                })?;
            Some(hash)
        }
    };
    let id = match &req.document_id {
        None => None,
        Some(id) => Some(parse_id(id).ok_or_else(|| {
            bad_request("documentId must be \"sha256:\" followed by 64 hex digits")
        })?),
    };
    match (id, pq) {
        (Some(a), Some(b)) if a != b => Err(bad_request(
            "documentId and extensions.persistedQuery name different documents",
        )),
        (Some(a), _) => Ok(Some(Named::DocumentId(a))),
        (None, Some(b)) => Ok(Some(Named::PersistedQuery(b))),
        (None, None) => Ok(None),
    }
}

impl PersistedDocuments {
    /// From `[security]`, with the manifest already loaded when trusted documents are on.
    pub fn new(security: &SecurityConfig, manifest: Option<Manifest>) -> Self {
        let trusted = manifest.map(|m| (m, security.trusted_documents.mode));
        let strict = matches!(trusted, Some((_, TrustedMode::Strict)));
        let apq = (security.apq && !strict).then(|| ApqStore::new(security.apq_cache_bytes));
        Self { trusted, apq }
    }

    fn strict(&self) -> bool {
        matches!(self.trusted, Some((_, TrustedMode::Strict)))
    }

    fn in_manifest(&self, hex: &str) -> bool {
        self.trusted.as_ref().is_some_and(|(m, _)| m.contains(hex))
    }

    /// The text `req` runs, or the finished error response. `exempt` says whether a text
    /// outside the manifest may still run under strict mode (a gateway's `_service` query,
    /// answered the same to everyone and holding no data).
    pub fn resolve<'r>(
        &self,
        req: &'r GraphqlRequest,
        exempt: impl FnOnce() -> bool,
    ) -> Result<Resolved<'r>, Refusal> {
        let named = named(req)?;
        let trusted = self.trusted.is_some();
        match (named, req.query.as_deref()) {
            (None, None) => Err(bad_request(
                "the request has no `query` and no `documentId`",
            )),
            (None, Some(text)) => {
                if !trusted {
                    return Ok(Resolved {
                        text: DocumentText::Request(text),
                        register: None,
                        untrusted: false,
                    });
                }
                let known = self.in_manifest(&sha256_hex(text));
                if !known && self.strict() && !exempt() {
                    return Err(forbidden());
                }
                Ok(Resolved {
                    text: DocumentText::Request(text),
                    register: None,
                    untrusted: !known,
                })
            }
            (Some(named), Some(text)) => {
                let hex = named.hex();
                if sha256_hex(text) != hex {
                    return Err(bad_request("provided sha does not match query"));
                }
                let known = self.in_manifest(hex);
                if !known && self.strict() && !exempt() {
                    return Err(forbidden());
                }
                Ok(Resolved {
                    text: DocumentText::Request(text),
                    register: self.apq.as_ref().map(|_| hex.to_owned()),
                    untrusted: trusted && !known,
                })
            }
            (Some(named), None) => self.by_id(&named),
        }
    }

    /// A document named by id alone.
    fn by_id(&self, named: &Named) -> Result<Resolved<'static>, Refusal> {
        let hex = named.hex();
        if let Some(doc) = self.trusted.as_ref().and_then(|(m, _)| m.get(hex)) {
            return Ok(Resolved {
                text: DocumentText::Stored(doc.clone()),
                register: None,
                untrusted: false,
            });
        }
        if let Some(doc) = self.apq.as_ref().and_then(|s| s.get(hex)) {
            return Ok(Resolved {
                text: DocumentText::Stored(doc),
                register: None,
                untrusted: self.trusted.is_some(),
            });
        }
        Err(match named {
            Named::PersistedQuery(_) if self.apq.is_some() => refuse(
                OutcomeKind::PersistedQueryRetry,
                ErrorCode::PersistedQueryNotFound,
                "PersistedQueryNotFound",
            ),
            Named::PersistedQuery(_) if self.trusted.is_none() => refuse(
                OutcomeKind::PersistedQueryRetry,
                ErrorCode::PersistedQueryNotSupported,
                "PersistedQueryNotSupported",
            ),
            _ => refuse(
                OutcomeKind::RequestError,
                ErrorCode::DocumentNotFound,
                format!("no trusted document has the id sha256:{hex}"),
            ),
        })
    }

    /// Keeps an APQ registration whose document validated.
    pub fn register(&self, hex: &str, prepared: &PreparedDocument) {
        if let (Some(store), Ok(_)) = (&self.apq, &prepared.document) {
            store.insert(hex, prepared.text.clone());
        }
    }

    /// Documents in the manifest (0 without trusted documents).
    pub fn manifest_len(&self) -> usize {
        self.trusted.as_ref().map_or(0, |(m, _)| m.len())
    }

    /// Bytes the APQ store holds now.
    pub fn apq_bytes(&self) -> u64 {
        self.apq.as_ref().map_or(0, ApqStore::weighted_size)
    }
}

fn forbidden() -> Refusal {
    refuse(
        OutcomeKind::RequestError,
        ErrorCode::ForbiddenQuery,
        "this server runs only trusted documents: send the document's id (documentId) from the manifest",
    )
}

/// Documents registered through APQ, by the hex SHA-256 of their text; bounded by bytes.
struct ApqStore {
    cache: moka::sync::Cache<String, Arc<str>, foldhash::fast::RandomState>,
    max_entry: u64,
}

fn weight(text_len: usize) -> u32 {
    // The key (64 bytes), the text, and the entry's bookkeeping.
    u32::try_from(text_len.saturating_add(64 + 128)).unwrap_or(u32::MAX)
}

impl ApqStore {
    fn new(max_bytes: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .weigher(|_: &String, v: &Arc<str>| weight(v.len()))
                .max_capacity(max_bytes)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            max_entry: max_bytes / ADMISSION_FRACTION,
        }
    }

    fn get(&self, hex: &str) -> Option<Arc<str>> {
        self.cache.get(hex)
    }

    fn insert(&self, hex: &str, text: Arc<str>) {
        if u64::from(weight(text.len())) <= self.max_entry {
            self.cache.insert(hex.to_owned(), text);
        }
    }

    fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "query Orgs { organizations { id } }";

    fn req(json: serde_json::Value) -> GraphqlRequest {
        GraphqlRequest::from_json(json.to_string().as_bytes()).expect("request")
    }

    fn code(r: Result<Resolved<'_>, Refusal>) -> (OutcomeKind, String) {
        let o = Outcome::from(r.expect_err("refused"));
        let body: serde_json::Value = serde_json::from_slice(&o.body).expect("json");
        (
            o.kind,
            body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    }

    fn with_manifest(mode: TrustedMode, apq: bool) -> PersistedDocuments {
        let mut security = SecurityConfig {
            apq,
            ..SecurityConfig::default()
        };
        security.trusted_documents.mode = mode;
        let json = serde_json::json!({"version": 1, "documents": {sha256_hex(DOC): DOC}});
        let m = Manifest::parse(json.to_string().as_bytes()).expect("manifest");
        PersistedDocuments::new(&security, Some(m))
    }

    #[test]
    fn strict_runs_the_manifest_only() {
        let p = with_manifest(TrustedMode::Strict, true);
        let id = sha256_hex(DOC);
        let r = req(serde_json::json!({"documentId": format!("sha256:{id}")}));
        assert_eq!(&*p.resolve(&r, || false).expect("by id").text, DOC);
        let r = req(serde_json::json!({"query": DOC}));
        assert!(!p.resolve(&r, || false).expect("known text").untrusted);
        let r = req(serde_json::json!({"query": "{ organizations { name } }"}));
        assert_eq!(
            code(p.resolve(&r, || false)),
            (OutcomeKind::RequestError, "FORBIDDEN_QUERY".into())
        );
        assert!(p.resolve(&r, || true).is_ok(), "exempt (_service)");
        let r = req(serde_json::json!({"documentId": format!("sha256:{}", "a".repeat(64))}));
        assert_eq!(
            code(p.resolve(&r, || false)),
            (OutcomeKind::RequestError, "DOCUMENT_NOT_FOUND".into())
        );
        let r = req(
            serde_json::json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "b".repeat(64)}}}),
        );
        assert_eq!(
            code(p.resolve(&r, || false)),
            (OutcomeKind::RequestError, "DOCUMENT_NOT_FOUND".into())
        );
    }

    #[test]
    fn bad_ids_are_bad_requests() {
        let p = PersistedDocuments::new(&SecurityConfig::default(), None);
        for body in [
            serde_json::json!({"documentId": "sha1:abc"}),
            serde_json::json!({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "a".repeat(64)}}}),
            serde_json::json!({"query": DOC, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "a".repeat(64)}}}),
        ] {
            assert_eq!(
                code(p.resolve(&req(body), || false)),
                (OutcomeKind::BadRequest, "BAD_REQUEST".into())
            );
        }
    }
}
