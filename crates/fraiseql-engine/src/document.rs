//! Parsing and validating query text once: a bounded cache of validated documents (or of their
//! errors, so a repeated bad query is as cheap as a good one). Which text a request runs (its
//! own, a trusted document's, an automatic persisted query's) is decided before, in
//! `persisted.rs`, against the manifest (`manifest.rs`).

pub mod manifest;
pub mod operations;
pub mod persisted;

use std::sync::Arc;

use apollo_compiler::executable::Operation;
use apollo_compiler::parser::Parser;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use fraiseql_config::LimitsConfig;

use crate::error::{ErrorCode, GraphqlError};
use crate::limits;
use crate::request::Method;
use crate::response::{Outcome, OutcomeKind};

/// A parsed, limit-checked and validated document, or why it is not one, with its text.
#[derive(Debug)]
pub struct PreparedDocument {
    /// The query text (shared with the cache's key; plan keys point at it too).
    pub text: Arc<str>,
    /// The document or its errors.
    pub document: Result<Valid<ExecutableDocument>, Vec<GraphqlError>>,
}

/// A cached [`PreparedDocument`].
pub type Prepared = Arc<PreparedDocument>;

/// Cache of [`Prepared`] documents keyed by query text, bounded by bytes (the text and an
/// estimate of the parsed document), not by count: a few huge queries cannot fill memory.
pub struct DocumentCache {
    cache: moka::sync::Cache<Arc<str>, Prepared, foldhash::fast::RandomState>,
    max_entry: u64,
}

/// Parsed documents take several times their text; this bounds the estimate generously.
const DOCUMENT_BYTES_PER_TEXT_BYTE: usize = 12;

/// moka applies evictions in batches of up to 64 writes, so a cache can briefly hold 64 entries
/// more than its bound: entries heavier than 1/64 of the bound are not cached at all, and the
/// cache never holds much more than twice its bound.
pub(crate) const ADMISSION_FRACTION: u64 = 64;

fn document_weight(text_len: usize) -> u32 {
    u32::try_from(text_len.saturating_mul(DOCUMENT_BYTES_PER_TEXT_BYTE + 1) + 512)
        .unwrap_or(u32::MAX)
}

impl DocumentCache {
    /// A cache holding up to `max_bytes` of documents.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .weigher(|k: &Arc<str>, _: &Prepared| document_weight(k.len()))
                .max_capacity(max_bytes)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            max_entry: max_bytes / ADMISSION_FRACTION,
        }
    }

    /// The prepared document for `query`, from the cache or freshly prepared.
    pub fn get(&self, schema: &Valid<Schema>, limits: &LimitsConfig, query: &str) -> Prepared {
        if let Some(p) = self.cache.get(query) {
            return p;
        }
        let text: Arc<str> = Arc::from(query);
        let p = Arc::new(PreparedDocument {
            text: text.clone(),
            document: prepare(schema, limits, query),
        });
        if u64::from(document_weight(query.len())) <= self.max_entry {
            self.cache.insert(text, p.clone());
        }
        p
    }

    /// Bytes the cache holds now (after pending evictions).
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// The pipeline's document stage, once the text is prepared: the operation `name` picks, if it
/// may run over `method` (GraphQL over HTTP allows only queries over GET). `Err` is the finished
/// error response.
pub(crate) fn operation<'d>(
    prepared: &'d PreparedDocument,
    name: Option<&str>,
    method: Method,
) -> Result<(&'d Valid<ExecutableDocument>, &'d Operation), Outcome> {
    let doc = prepared
        .document
        .as_ref()
        .map_err(|errors| Outcome::request_error(errors.clone()))?;
    let op = doc.operations.get(name).map_err(|e| {
        Outcome::request_error(vec![GraphqlError::new(
            ErrorCode::OperationNotFound,
            e.message().to_string(),
        )])
    })?;
    let allowed = op.is_query() || (op.is_mutation() && method == Method::Post);
    if !allowed {
        let (kind, message) = if op.is_subscription() {
            (
                OutcomeKind::RequestError,
                "subscription operations are served over a WebSocket (subprotocol graphql-transport-ws) or Server-Sent Events (POST with Accept: text/event-stream) on this endpoint".to_owned(),
            )
        } else if method == Method::Get {
            (
                OutcomeKind::MethodNotAllowed,
                format!("{} operations must be sent with POST", op.operation_type),
            )
        } else {
            (
                OutcomeKind::RequestError,
                format!("{} operations are not supported", op.operation_type),
            )
        };
        return Err(Outcome::request_error_of_kind(
            kind,
            vec![GraphqlError::new(ErrorCode::OperationNotSupported, message)],
        ));
    }
    Ok((doc, op))
}

fn classify(message: &str) -> ErrorCode {
    if message.starts_with("syntax error") {
        ErrorCode::GraphqlParseFailed
    } else if message.contains("limit reached") || message.contains("too much recursion") {
        ErrorCode::QueryTooComplex
    } else {
        ErrorCode::GraphqlValidationFailed
    }
}

fn errors(list: &apollo_compiler::validation::DiagnosticList) -> Vec<GraphqlError> {
    let mut out: Vec<GraphqlError> = Vec::new();
    for d in list.iter() {
        let e = GraphqlError::from_apollo(d.to_json(), classify(&d.error.to_string()));
        // The parser can report one problem twice (lexer and parser); clients want it once.
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

/// Parses with token and nesting limits, checks cost limits, then validates against `schema`.
pub fn prepare(
    schema: &Valid<Schema>,
    limits: &LimitsConfig,
    query: &str,
) -> Result<Valid<ExecutableDocument>, Vec<GraphqlError>> {
    // The parser's own nesting limit guards the stack; the depth limit proper is checked below.
    let mut parser = Parser::new()
        .token_limit(limits.max_tokens)
        .recursion_limit(limits.max_depth.saturating_mul(4).max(64));
    let doc = match parser.parse_executable(schema, query, "query.graphql") {
        Ok(doc) => doc,
        Err(e) => {
            let mut errs = errors(&e.errors);
            if parser.tokens_reached() >= limits.max_tokens {
                errs = vec![GraphqlError::new(
                    ErrorCode::QueryTooComplex,
                    format!(
                        "the query has more than {} tokens, the limit",
                        limits.max_tokens
                    ),
                )];
            }
            // Syntax errors stop here; build errors (e.g. an unknown field) are validation errors,
            // but the cost limits still come first.
            if errs
                .iter()
                .any(|e| e.extensions.code != ErrorCode::GraphqlValidationFailed)
            {
                return Err(errs);
            }
            limits::check(&e.partial, limits).map_err(|l| vec![l])?;
            return Err(errs);
        }
    };
    limits::check(&doc, limits).map_err(|e| vec![e])?;
    doc.validate(schema).map_err(|e| errors(&e.errors))
}

#[cfg(test)]
mod tests;
