//! [`TestClient`]: GraphQL requests through the real router, in process (`Router::oneshot`, no
//! socket), as the seed's tests use it: `TestClient::create(config)`, `set_tenant(key)`,
//! `execute(query)`.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use fraiseql_engine::resolvers::Resolvers;
use fraiseql_engine::Engine;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::TestError;

/// A response as a test sees it.
#[derive(Debug)]
pub struct TestResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body parsed as JSON (`Null` if it was not JSON).
    pub json: serde_json::Value,
    /// The raw body.
    pub text: String,
    /// Every response header.
    pub headers: http::HeaderMap,
}

/// Sends GraphQL requests through the real router, in process.
pub struct TestClient {
    engine: Arc<Engine>,
    router: axum::Router,
    tenant: Option<String>,
    token: Option<String>,
}

impl TestClient {
    /// Loads the config file, checks the schema against the databases, and builds the router.
    pub async fn create(config: impl AsRef<Path>) -> Result<Self, TestError> {
        let config = fraiseql_config::load_file(config.as_ref())?;
        Self::from_config(config).await
    }

    /// Like [`TestClient::create`] with an already loaded config.
    pub async fn from_config(config: fraiseql_config::Config) -> Result<Self, TestError> {
        Self::with_resolvers(config, Resolvers::new()).await
    }

    /// Like [`TestClient::from_config`], serving Rust `resolvers` too.
    pub async fn with_resolvers(
        config: fraiseql_config::Config,
        resolvers: Resolvers,
    ) -> Result<Self, TestError> {
        let engine = Arc::new(Engine::with_resolvers(config, resolvers)?);
        engine.check_databases().await?;
        engine.start_events().await?;
        engine.start_cache_bus().await?;
        engine.start_subscriptions();
        Ok(Self {
            router: fraiseql_server::router(engine.clone()),
            engine,
            tenant: None,
            token: None,
        })
    }

    /// The engine behind the client.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Sends the configured tenant header (`[multi_tenancy] auth_header`) on later requests.
    pub fn set_tenant(&mut self, key: impl Into<String>) {
        self.tenant = Some(key.into());
    }

    /// Sends `Authorization: Bearer <token>` on later requests (`None` to stop).
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// Stops sending the tenant header.
    pub fn clear_tenant(&mut self) {
        self.tenant = None;
    }

    /// Runs `query` and returns the response body as JSON.
    pub async fn execute(&self, query: &str) -> Result<serde_json::Value, TestError> {
        Ok(self.execute_with(query, serde_json::json!({})).await?.json)
    }

    /// Runs `query` with `variables`.
    pub async fn execute_with(
        &self,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<TestResponse, TestError> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        self.post_raw(
            "application/json",
            Some("application/graphql-response+json"),
            serde_json::to_vec(&body)?,
        )
        .await
    }

    /// POSTs `body` as tenant `tenant` (overriding [`TestClient::set_tenant`]) with this client's token.
    pub async fn post_as(&self, tenant: &str, body: Vec<u8>) -> Result<TestResponse, TestError> {
        let req =
            http::Request::post("/graphql").header(http::header::CONTENT_TYPE, "application/json");
        self.send_as(Some(tenant), req, Body::from(body)).await
    }

    /// Sends any POST body to `/graphql`.
    pub async fn post_raw(
        &self,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<TestResponse, TestError> {
        let mut req =
            http::Request::post("/graphql").header(http::header::CONTENT_TYPE, content_type);
        if let Some(a) = accept {
            req = req.header(http::header::ACCEPT, a);
        }
        self.send(req, Body::from(body)).await
    }

    /// Sends a GET to `uri` (e.g. `/graphql?query=...`).
    pub async fn get(&self, uri: &str, accept: Option<&str>) -> Result<TestResponse, TestError> {
        let mut req = http::Request::get(uri);
        if let Some(a) = accept {
            req = req.header(http::header::ACCEPT, a);
        }
        self.send(req, Body::empty()).await
    }

    async fn send(
        &self,
        req: http::request::Builder,
        body: Body,
    ) -> Result<TestResponse, TestError> {
        self.send_as(self.tenant.as_deref(), req, body).await
    }

    async fn send_as(
        &self,
        tenant: Option<&str>,
        mut req: http::request::Builder,
        body: Body,
    ) -> Result<TestResponse, TestError> {
        if let Some(t) = tenant {
            // Raw bytes, so tests can send what a hostile client would (unicode, huge values).
            req = req.header(
                self.engine.config().multi_tenancy.auth_header.as_str(),
                http::HeaderValue::from_bytes(t.as_bytes())?,
            );
        }
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.oneshot(req, body).await
    }

    /// Sends a GET to `uri` with these headers alone (no tenant header, no token).
    pub async fn get_with(
        &self,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestResponse, TestError> {
        let mut req = http::Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.oneshot(req, Body::empty()).await
    }

    async fn oneshot(
        &self,
        req: http::request::Builder,
        body: Body,
    ) -> Result<TestResponse, TestError> {
        let resp = self.router.clone().oneshot(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(TestResponse {
            status,
            content_type,
            json,
            text,
            headers,
        })
    }
}
