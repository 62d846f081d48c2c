//! The trusted documents' manifest: `{"version": 1, "documents": {"<sha256>": "<document>"}}`
//! (FraiseQL's format, written by `fraiseql documents manifest`), Apollo's persisted query
//! manifest (`{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id",
//! "body", ...}]}`, from `generate-persisted-query-manifest`), or GraphQL Codegen's
//! `persisted-documents.json` (`{"<sha256>": "<document>"}`). Every id must be the SHA-256 of its
//! document: a manifest that says otherwise is refused at start-up, so a request's id always
//! names the text it hashes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

/// A manifest larger than this is refused (it is read into memory whole, at start-up).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// Why a manifest cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("cannot read the trusted documents manifest {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not a manifest.
    #[error("the trusted documents manifest {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the entry.
        reason: String,
    },
}

/// Documents by the lowercase hex SHA-256 of their text.
#[derive(Debug, Default, Clone)]
pub struct Manifest {
    documents: HashMap<String, Arc<str>, foldhash::fast::RandomState>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FraiseqlManifest {
    version: u32,
    documents: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ApolloManifest {
    format: String,
    version: u32,
    operations: Vec<ApolloOperation>,
}

#[derive(Deserialize)]
struct ApolloOperation {
    id: String,
    body: String,
}

/// The lowercase hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// A document id as clients send it: `sha256:<hex>` (GraphQL over HTTP's persisted documents)
/// or the bare 64 hex digits (Apollo's `sha256Hash`); `None` if it is neither. Lowercased.
pub fn parse_id(id: &str) -> Option<String> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let read = |reason: String| ManifestError::Read {
            path: shown.clone(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| read(e.to_string()))?
            .len();
        if len > MAX_MANIFEST_BYTES {
            return Err(read(format!(
                "it has {len} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have"
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| read(e.to_string()))?;
        Self::parse(&bytes).map_err(|reason| ManifestError::Invalid {
            path: shown.clone(),
            reason,
        })
    }

    /// Parses manifest JSON; `Err` says what is wrong and where.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let flat = value.as_object().is_some_and(|o| {
            !o.contains_key("documents")
                && !o.contains_key("format")
                && o.values().all(|v| v.is_string())
        });
        let entries: Vec<(String, String)> = if flat {
            let serde_json::Value::Object(o) = value else {
                return Err("not a JSON object".to_owned());
            };
            o.into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
                .collect()
        } else if value.get("format").is_some() {
            let m: ApolloManifest = serde_json::from_value(value).map_err(|e| e.to_string())?;
            if m.format != "apollo-persisted-query-manifest" || m.version != 1 {
                return Err(format!(
                    "format {:?} version {} is not \"apollo-persisted-query-manifest\" version 1",
                    m.format, m.version
                ));
            }
            m.operations.into_iter().map(|o| (o.id, o.body)).collect()
        } else {
            let m: FraiseqlManifest = serde_json::from_value(value).map_err(|e| {
                format!("{e} (expected {{\"version\": 1, \"documents\": {{\"<sha256>\": \"<document>\"}}}})")
            })?;
            if m.version != 1 {
                return Err(format!("version {} is not 1", m.version));
            }
            let mut out = Vec::with_capacity(m.documents.len());
            for (id, doc) in m.documents {
                match doc {
                    serde_json::Value::String(text) => out.push((id, text)),
                    _ => return Err(format!("document {id:?} is not a string")),
                }
            }
            out
        };
        let mut documents = HashMap::default();
        for (id, text) in entries {
            let key = parse_id(&id).ok_or_else(|| {
                format!("{id:?} is not a SHA-256 id (64 hex digits, optionally after `sha256:`)")
            })?;
            let actual = sha256_hex(&text);
            if actual != key {
                return Err(format!(
                    "the document under {id:?} hashes to {actual}: an id must be the SHA-256 of its document's text, byte for byte"
                ));
            }
            documents.insert(key, Arc::from(text));
        }
        Ok(Self { documents })
    }

    /// The document whose SHA-256 is `hex` (lowercase).
    pub fn get(&self, hex: &str) -> Option<&Arc<str>> {
        self.documents.get(hex)
    }

    /// Whether `hex` names a document of the manifest.
    pub fn contains(&self, hex: &str) -> bool {
        self.documents.contains_key(hex)
    }

    /// How many documents it holds.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Every (id, document).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<str>)> {
        self.documents.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "query Orgs { organizations { id } }";

    #[test]
    fn ids_are_the_sha256_of_their_document() {
        // echo -n 'query Orgs { organizations { id } }' | sha256sum
        let id = sha256_hex(DOC);
        assert_eq!(id.len(), 64);
        assert_eq!(parse_id(&format!("sha256:{id}")).as_deref(), Some(&*id));
        assert_eq!(parse_id(&id.to_ascii_uppercase()).as_deref(), Some(&*id));
        assert_eq!(parse_id("sha256:abc"), None);
        assert_eq!(parse_id(&format!("md5:{id}")), None);
        let json = serde_json::json!({"version": 1, "documents": {id.clone(): DOC}});
        let m = Manifest::parse(json.to_string().as_bytes()).expect("manifest");
        assert_eq!(m.get(&id).map(|d| &**d), Some(DOC));
        let prefixed =
            serde_json::json!({"version": 1, "documents": {format!("sha256:{id}"): DOC}});
        assert!(Manifest::parse(prefixed.to_string().as_bytes())
            .expect("prefixed keys")
            .contains(&id));
    }

    #[test]
    fn a_wrong_id_or_shape_is_refused_naming_the_entry() {
        let wrong = "0".repeat(64);
        let json = serde_json::json!({"version": 1, "documents": {wrong.clone(): DOC}});
        let e = Manifest::parse(json.to_string().as_bytes()).expect_err("wrong id");
        assert!(
            e.contains(&wrong) && e.contains(&format!("hashes to {}", sha256_hex(DOC))),
            "{e}"
        );
        let e = Manifest::parse(br#"{"version": 2, "documents": {}}"#).expect_err("version");
        assert_eq!(e, "version 2 is not 1");
        let e = Manifest::parse(br#"{"documents": [], "version": 1}"#).expect_err("shape");
        assert!(e.contains("expected {\"version\": 1"), "{e}");
        let e = Manifest::parse(br#"{"version": 1, "documents": {"x": "query { a }"}}"#)
            .expect_err("id");
        assert!(e.contains("\"x\" is not a SHA-256 id"), "{e}");
    }

    #[test]
    fn apollos_manifest_format_is_read_too() {
        let id = sha256_hex(DOC);
        let json = serde_json::json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{"id": id, "name": "Orgs", "type": "query", "body": DOC}]
        });
        let m = Manifest::parse(json.to_string().as_bytes()).expect("apollo manifest");
        assert_eq!(m.len(), 1);
        assert!(m.contains(&id));
        // GraphQL Codegen's client preset: a flat map.
        let json = serde_json::json!({ format!("sha256:{id}"): DOC });
        let m = Manifest::parse(json.to_string().as_bytes()).expect("codegen manifest");
        assert!(m.contains(&id));
    }
}
