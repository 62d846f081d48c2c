//! Parsing and validating query text once: a bounded cache of validated documents (or of their
//! errors, so a repeated bad query is as cheap as a good one).

use std::sync::Arc;

use apollo_compiler::parser::Parser;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use fraiseql_config::LimitsConfig;

use crate::error::{ErrorCode, GraphqlError};
use crate::limits;

/// A parsed, limit-checked and validated document, or why it is not one.
pub type Prepared = Arc<Result<Valid<ExecutableDocument>, Vec<GraphqlError>>>;

/// Cache of [`Prepared`] documents keyed by query text.
pub struct DocumentCache {
    cache: moka::sync::Cache<Arc<str>, Prepared>,
}

impl DocumentCache {
    /// A cache holding up to `capacity` documents.
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: moka::sync::Cache::new(capacity),
        }
    }

    /// The prepared document for `query`, from the cache or freshly prepared.
    pub fn get(&self, schema: &Valid<Schema>, limits: &LimitsConfig, query: &str) -> Prepared {
        if let Some(p) = self.cache.get(query) {
            return p;
        }
        let p = Arc::new(prepare(schema, limits, query));
        self.cache.insert(Arc::from(query), p.clone());
        p
    }
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
