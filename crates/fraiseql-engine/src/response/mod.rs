//! Response bodies: PostgreSQL's JSON text is copied into the body once, never parsed.

use bytes::{BufMut, Bytes, BytesMut};

mod assemble;

use crate::error::GraphqlError;

pub(crate) use assemble::assemble;

/// How the HTTP layer should treat an outcome (GraphQL over HTTP status rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Execution ran; `data` is present (maybe with field errors).
    Data,
    /// The request failed before execution (parse, validation, limits, variables); no `data`.
    RequestError,
    /// The operation type cannot run over this HTTP method (a mutation over GET).
    MethodNotAllowed,
    /// The request is malformed whatever the media type (a persisted query whose text does not
    /// hash to its id): 400 under `application/json` too.
    BadRequest,
    /// Apollo's automatic persisted queries asking the client to send the text
    /// (`PersistedQueryNotFound`, `PersistedQueryNotSupported`): 200 whatever the media type, as
    /// Apollo Server answers; Apollo Client 3 stops sending hashes for good after a 400.
    PersistedQueryRetry,
    /// The tenant's plan refused it (HTTP 429; see [`Outcome::rate_limited`]).
    RateLimited,
}

/// A finished response: its JSON body and its kind.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What happened.
    pub kind: OutcomeKind,
    /// The complete JSON body.
    pub body: Bytes,
    /// Error codes in the body, for metrics and logs.
    pub error_codes: Vec<crate::error::ErrorCode>,
    /// `query` or `mutation`, once the operation is known (for metrics).
    pub operation: Option<&'static str>,
    /// For answers made only of `@cache` fields: their `Cache-Control` and `Age`.
    pub cache: Option<CacheHeaders>,
    /// Why the tenant's plan refused it (kind `RateLimited`): its headers.
    pub refusal: Option<Box<crate::quota::Refusal>>,
}

/// `Cache-Control: private, max-age=<max_age>` and `Age: <age>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHeaders {
    /// Seconds the answer stays fresh.
    pub max_age: u64,
    /// Seconds since it was read from the database.
    pub age: u64,
}

impl Outcome {
    /// A request error: `{"errors":[...]}` with no `data`.
    pub fn request_error(errors: Vec<GraphqlError>) -> Self {
        Self::request_error_of_kind(OutcomeKind::RequestError, errors)
    }

    /// A request error of a specific kind.
    pub fn request_error_of_kind(kind: OutcomeKind, errors: Vec<GraphqlError>) -> Self {
        let b = ResponseBody {
            errors,
            ..ResponseBody::default()
        };
        Self {
            kind,
            error_codes: b.errors.iter().map(|e| e.extensions.code).collect(),
            body: b.finish_without_data(),
            operation: None,
            cache: None,
            refusal: None,
        }
    }

    /// A request refused by the tenant's plan: `RATE_LIMITED`, answered 429 with the refusal's
    /// headers.
    pub fn rate_limited(refusal: crate::quota::Refusal) -> Self {
        let mut o = Self::request_error_of_kind(
            OutcomeKind::RateLimited,
            vec![GraphqlError::new(
                crate::error::ErrorCode::RateLimited,
                refusal.message.clone(),
            )],
        );
        o.operation = (refusal.limit == crate::quota::Limit::Mutations).then_some("mutation");
        o.refusal = Some(Box::new(refusal));
        o
    }
}

/// Builds `{"data":{...},"errors":[...]}` from pre-serialised field values, in one buffer: each
/// field's JSON is copied once, straight from PostgreSQL's row.
#[derive(Debug)]
pub struct ResponseBody {
    buf: BytesMut,
    fields: usize,
    data_is_null: bool,
    /// Field errors collected so far.
    pub errors: Vec<GraphqlError>,
    /// `extensions`: key and JSON value text.
    pub extensions: Vec<(&'static str, String)>,
}

const DATA_OPEN: &[u8] = b"{\"data\":{";

impl Default for ResponseBody {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl ResponseBody {
    /// A body expecting about `capacity` bytes of data.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity + 64);
        buf.put_slice(DATA_OPEN);
        Self {
            buf,
            fields: 0,
            data_is_null: false,
            errors: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// Appends `"key": <json>`; `json` must be valid JSON text (PostgreSQL's output, or serde's).
    pub fn field(&mut self, key: &str, json: &[u8]) {
        if self.fields > 0 {
            self.buf.put_slice(b",");
        }
        // Response keys are GraphQL names (validated), which need no escaping; anything else
        // goes through serde.
        if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.buf.put_slice(b"\"");
            self.buf.put_slice(key.as_bytes());
            self.buf.put_slice(b"\":");
        } else {
            let quoted = serde_json::to_string(key).unwrap_or_else(|_| "\"\"".to_owned());
            self.buf.put_slice(quoted.as_bytes());
            self.buf.put_slice(b":");
        }
        self.buf.put_slice(json);
        self.fields += 1;
    }

    /// A non-null field failed: `data` becomes `null` (error propagation to the root).
    pub fn null_data(&mut self) {
        self.data_is_null = true;
    }

    fn put_errors(out: &mut BytesMut, errors: &[GraphqlError]) {
        if !errors.is_empty() {
            out.put_slice(b",\"errors\":");
            out.put_slice(&serde_json::to_vec(errors).unwrap_or_else(|_| b"[]".to_vec()));
        }
    }

    fn put_extensions(out: &mut BytesMut, extensions: &[(&str, String)]) {
        if extensions.is_empty() {
            return;
        }
        out.put_slice(b",\"extensions\":{");
        for (i, (k, v)) in extensions.iter().enumerate() {
            if i > 0 {
                out.put_slice(b",");
            }
            out.put_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
            out.put_slice(b":");
            out.put_slice(v.as_bytes());
        }
        out.put_slice(b"}");
    }

    /// The finished body with `data`.
    pub fn finish(mut self) -> Bytes {
        if self.data_is_null {
            let mut out = BytesMut::with_capacity(64);
            out.put_slice(b"{\"data\":null");
            Self::put_errors(&mut out, &self.errors);
            Self::put_extensions(&mut out, &self.extensions);
            out.put_slice(b"}");
            return out.freeze();
        }
        self.buf.put_slice(b"}");
        Self::put_errors(&mut self.buf, &self.errors);
        Self::put_extensions(&mut self.buf, &self.extensions);
        self.buf.put_slice(b"}");
        self.buf.freeze()
    }

    fn finish_without_data(self) -> Bytes {
        let errors = serde_json::to_vec(&self.errors).unwrap_or_else(|_| b"[]".to_vec());
        let mut out = BytesMut::with_capacity(errors.len() + 16);
        out.put_slice(b"{\"errors\":");
        out.put_slice(&errors);
        out.put_slice(b"}");
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_spliced_json() {
        let mut b = ResponseBody::with_capacity(16);
        b.field("a", b"[1,2]");
        b.field("b", b"null");
        assert_eq!(&b.finish()[..], br#"{"data":{"a":[1,2],"b":null}}"#);
        let mut b = ResponseBody::default();
        b.field("a", b"1");
        b.errors
            .push(GraphqlError::new(crate::error::ErrorCode::NotFound, "x"));
        b.null_data();
        assert_eq!(
            &b.finish()[..],
            br#"{"data":null,"errors":[{"message":"x","extensions":{"code":"NOT_FOUND"}}]}"#
        );
        assert_eq!(&ResponseBody::default().finish()[..], br#"{"data":{}}"#);
    }
}
