//! GraphiQL, vendored (see `assets/graphiql/LICENSE-*`), so a browser needs no CDN.
//!
//! The page itself is static and carries no credentials. It reads a tenant and a token from
//! its URL fragment (`/graphql#tenant=acme_corp&token=<jwt>`, the link `fraiseql run` prints
//! under `[server] profile = "development"`; a fragment is never sent to a server), and keeps
//! GraphiQL's state, headers included, in the browser tab's `sessionStorage`.
//! `/graphiql/settings.js` tells it the name of the tenant header (`[multi_tenancy]
//! auth_header`), nothing else.

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use http::{header, StatusCode};

use crate::AppState;

const INDEX: &str = include_str!("../assets/graphiql/index.html");

pub(crate) fn page() -> Response {
    Html(INDEX).into_response()
}

/// `window.fraiseqlGraphiql`: what the page needs to know about this server's config (the
/// tenant header's name, `null` without multi-tenancy).
fn settings(tenant_header: Option<&str>) -> String {
    format!(
        "window.fraiseqlGraphiql = {};\n",
        serde_json::json!({ "tenantHeader": tenant_header })
    )
}

pub(crate) async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    if file == "settings.js" {
        let c = state.engine.config();
        return (
            [
                (header::CONTENT_TYPE, "text/javascript"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            settings(
                c.multi_tenancy
                    .enabled
                    .then_some(c.multi_tenancy.auth_header.as_str()),
            ),
        )
            .into_response();
    }
    let (body, mime): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (
            include_bytes!("../assets/graphiql/graphiql.min.js"),
            "text/javascript",
        ),
        "graphiql.min.css" => (
            include_bytes!("../assets/graphiql/graphiql.min.css"),
            "text/css",
        ),
        "react.production.min.js" => (
            include_bytes!("../assets/graphiql/react.production.min.js"),
            "text/javascript",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("../assets/graphiql/react-dom.production.min.js"),
            "text/javascript",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::settings;

    #[test]
    fn settings_name_the_tenant_header_and_nothing_else() {
        assert_eq!(
            settings(Some("X-Tenant-ID")),
            "window.fraiseqlGraphiql = {\"tenantHeader\":\"X-Tenant-ID\"};\n"
        );
        assert_eq!(
            settings(None),
            "window.fraiseqlGraphiql = {\"tenantHeader\":null};\n"
        );
    }

    #[test]
    fn the_page_carries_no_credentials_and_loads_nothing_from_elsewhere() {
        let page = super::INDEX;
        assert!(
            !page.contains("https://") && !page.contains("http://"),
            "{page}"
        );
        assert!(!page.contains("Bearer ey"), "{page}");
        assert!(page.contains("/graphiql/settings.js"));
        assert!(page.contains("sessionStorage"));
    }
}
