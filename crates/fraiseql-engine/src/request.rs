//! The GraphQL request: `query`, `operationName`, `variables`, `extensions`, from a JSON body
//! (POST) or URL parameters (GET), per GraphQL over HTTP.

use serde::Deserialize;

/// The HTTP method a request came with (GraphQL over HTTP allows only queries over GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET /graphql`
    Get,
    /// `POST /graphql`
    Post,
}

/// A GraphQL request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphqlRequest {
    /// The document text (absent when the request names a persisted document by id).
    #[serde(default)]
    pub query: Option<String>,
    /// A persisted (trusted) document's id, `sha256:<hex>` (GraphQL over HTTP's persisted
    /// documents); Apollo's `extensions.persistedQuery` names one too.
    #[serde(default)]
    pub document_id: Option<String>,
    /// Which operation of the document to run.
    #[serde(default)]
    pub operation_name: Option<String>,
    /// Variable values by name.
    #[serde(default)]
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
    /// Protocol extensions (`persistedQuery` is read; others are accepted and ignored).
    #[serde(default)]
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
    /// The gateway asked for a federated trace (`apollo-federation-include-trace: ftv1`): the
    /// answer carries `extensions.ftv1`. Set from the header, never from the body.
    #[serde(skip)]
    pub trace: bool,
}

/// Why a body or URL is not a GraphQL request.
#[derive(Debug, thiserror::Error)]
pub enum RequestParseError {
    /// Not JSON, or not the request shape.
    #[error("the request body is not a valid GraphQL request: {0}")]
    Body(String),
    /// GET parameters are malformed.
    #[error("invalid GraphQL request parameters: {0}")]
    Params(String),
}

impl GraphqlRequest {
    /// The variables as plan-cache key text (empty when there are none).
    pub(crate) fn variables_key(&self) -> String {
        self.variables
            .as_ref()
            .filter(|v| !v.is_empty())
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The variables as the GraphQL compiler takes them, before coercion.
    pub(crate) fn raw_variables(&self) -> apollo_compiler::response::JsonMap {
        match &self.variables {
            None => apollo_compiler::response::JsonMap::new(),
            Some(v) => v
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.clone().into()))
                .collect(),
        }
    }

    /// Parses a POST body.
    pub fn from_json(body: &[u8]) -> Result<Self, RequestParseError> {
        // Explicit `null` for optional members is allowed by the spec; serde handles it via Option.
        let req: Self =
            serde_json::from_slice(body).map_err(|e| RequestParseError::Body(e.to_string()))?;
        if !req.names_a_document() {
            return Err(RequestParseError::Body("missing field `query`".into()));
        }
        Ok(req)
    }

    /// Whether the request carries a document's text or an id.
    fn names_a_document(&self) -> bool {
        self.query.is_some()
            || self.document_id.is_some()
            || self
                .extensions
                .as_ref()
                .is_some_and(|e| e.get("persistedQuery").is_some_and(|v| !v.is_null()))
    }

    /// Builds a request from GET parameters (`variables` and `extensions` are JSON text).
    pub fn from_params(
        query: Option<String>,
        document_id: Option<String>,
        operation_name: Option<String>,
        variables: Option<String>,
        extensions: Option<String>,
    ) -> Result<Self, RequestParseError> {
        let json = |name: &str, v: Option<String>| -> Result<_, RequestParseError> {
            match v.filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&s)
                    .map(Some)
                    .map_err(|e| {
                        RequestParseError::Params(format!("`{name}` is not a JSON object: {e}"))
                    }),
            }
        };
        let req = Self {
            query,
            document_id: document_id.filter(|s| !s.is_empty()),
            operation_name: operation_name.filter(|s| !s.is_empty()),
            variables: json("variables", variables)?,
            extensions: json("extensions", extensions)?,
            trace: false,
        };
        if !req.names_a_document() {
            return Err(RequestParseError::Params("missing `query`".into()));
        }
        Ok(req)
    }
}
