//! Response bodies: PostgreSQL's JSON text is copied into the body once, never parsed.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::GraphqlError;

/// How the HTTP layer should treat an outcome (GraphQL over HTTP status rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Execution ran; `data` is present (maybe with field errors).
    Data,
    /// The request failed before execution (parse, validation, limits, variables); no `data`.
    RequestError,
    /// The operation type cannot run over this HTTP method (a mutation over GET).
    MethodNotAllowed,
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
        }
    }
}

/// Builds `{"data":{...},"errors":[...]}` from pre-serialised field values.
#[derive(Debug, Default)]
pub struct ResponseBody {
    data: BytesMut,
    fields: usize,
    data_is_null: bool,
    /// Field errors collected so far.
    pub errors: Vec<GraphqlError>,
}

impl ResponseBody {
    /// A body expecting about `capacity` bytes of data.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut data = BytesMut::with_capacity(capacity + 32);
        data.put_slice(b"{");
        Self {
            data,
            ..Self::default()
        }
    }

    /// Appends `"key": <json>`; `json` must be valid JSON text (PostgreSQL's output, or serde's).
    pub fn field(&mut self, key: &str, json: &[u8]) {
        if self.data.is_empty() {
            self.data.put_slice(b"{");
        }
        if self.fields > 0 {
            self.data.put_slice(b",");
        }
        // A GraphQL name needs no escaping, but serde makes that a fact rather than an assumption.
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| "\"\"".to_owned());
        self.data.put_slice(quoted.as_bytes());
        self.data.put_slice(b":");
        self.data.put_slice(json);
        self.fields += 1;
    }

    /// A non-null field failed: `data` becomes `null` (error propagation to the root).
    pub fn null_data(&mut self) {
        self.data_is_null = true;
    }

    /// The finished body with `data`.
    pub fn finish(mut self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.data.len() + 64);
        out.put_slice(b"{\"data\":");
        if self.data_is_null {
            out.put_slice(b"null");
        } else {
            if self.data.is_empty() {
                self.data.put_slice(b"{");
            }
            out.put_slice(&self.data);
            out.put_slice(b"}");
        }
        if !self.errors.is_empty() {
            out.put_slice(b",\"errors\":");
            out.put_slice(&serde_json::to_vec(&self.errors).unwrap_or_else(|_| b"[]".to_vec()));
        }
        out.put_slice(b"}");
        out.freeze()
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
