//! OpenTelemetry: the spans of a request's stages, of each SQL statement and of the event path,
//! and W3C trace context (`traceparent`) carried from the request into the outbox row, the
//! JetStream message and the subscriber, so one trace runs request -> commit -> publish ->
//! consumer.
//!
//! Off by default, and then free: [`enabled`] is false until the binary installs an exporter
//! (`[tracing] otlp_endpoint`), and every span here is `Span::none()` while it is, so the request
//! path creates, records and exports nothing. Attributes follow OpenTelemetry's semantic
//! conventions; a statement's span carries its text (only `$n` placeholders, never a value; cut
//! at [`MAX_STATEMENT`]) and never its parameters.

use std::sync::atomic::{AtomicBool, Ordering};

use fraiseql_config::TENANT_DATABASE;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::identity::RequestContext;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The longest statement text a span carries, in bytes.
pub const MAX_STATEMENT: usize = 2048;

/// The W3C trace context header (and NATS message header, and outbox column).
pub const TRACEPARENT: &str = "traceparent";

/// Turns the spans on: called once the binary has installed the OpenTelemetry layer and the
/// W3C propagator.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are recorded and exported.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether spans under the current one are kept: OpenTelemetry on and the current trace
/// sampled. A trace sampled out still has its root spans (they carry the decision on, in
/// `traceparent`), but no stage or statement spans: they would cost the same and export nothing.
pub fn sampled() -> bool {
    enabled() && Span::current().context().span().span_context().is_sampled()
}

/// A span inside a request or a message's handling ([`sampled`]), else `Span::none()`.
#[macro_export]
macro_rules! otel_child_span {
    ($($t:tt)*) => {
        if $crate::telemetry::sampled() {
            ::tracing::info_span!($($t)*)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// `tracing::info_span!` while OpenTelemetry is on, else `Span::none()` (nothing recorded): for
/// the spans that begin or continue a trace (they take the sampling decision).
#[macro_export]
macro_rules! otel_span {
    ($($t:tt)*) => {
        if $crate::telemetry::enabled() {
            ::tracing::info_span!($($t)*)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// A remote context as carried: `traceparent` and `tracestate`.
struct Getter<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Getter<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, "tracestate"]
    }
}

struct Setter(Vec<(String, String)>);

impl Injector for Setter {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Parents `span` on the remote context a carrier holds (`traceparent`, `tracestate`: HTTP or
/// NATS headers, an outbox row), when it holds a valid one.
pub fn set_parent(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if span.is_none() || traceparent.is_none() {
        return;
    }
    let carrier = Getter {
        traceparent,
        tracestate,
    };
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    if cx.span().span_context().is_valid() {
        // Fails only for a span that is not recording (filtered out): nothing to parent then.
        let _ = span.set_parent(cx);
    }
}

/// The W3C `traceparent` of `span` (`00-<trace>-<span>-<flags>`), if it is a recorded span.
pub fn traceparent(span: &Span) -> Option<String> {
    if !enabled() || span.is_none() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Setter(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut out));
    out.0
        .into_iter()
        .find(|(k, _)| k == TRACEPARENT)
        .map(|(_, v)| v)
}

/// The current span's `traceparent` (what a mutation writes into its outbox rows).
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    traceparent(&Span::current())
}

/// The trace id of the current span, lowercase hex (for log lines).
pub fn current_trace_id() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The database a statement runs on, as `db.name` says it: the tenant's own database for the
/// tenant database, else the configured name.
pub fn db_name<'a>(ctx: &'a RequestContext, database: &'a str) -> &'a str {
    match &ctx.tenant {
        Some(t) if database == TENANT_DATABASE && !t.database.is_empty() => &t.database,
        _ => database,
    }
}

/// The first keyword of a statement (`SELECT`, `INSERT`, `WITH`, ...), for `db.operation`.
fn operation(sql: &str) -> &str {
    let word = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    match word.len() {
        1..=16 => word,
        _ => "SQL",
    }
}

fn bounded(sql: &str) -> &str {
    if sql.len() <= MAX_STATEMENT {
        return sql;
    }
    let mut end = MAX_STATEMENT;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    &sql[..end]
}

/// The span of one SQL statement on `db_name` for tenant `tenant` (its text, never its values).
pub fn sql(db_name: &str, tenant: Option<&str>, sql: &str) -> Span {
    if !sampled() {
        return Span::none();
    }
    let op = operation(sql).to_ascii_uppercase();
    tracing::info_span!(
        "db.query",
        otel.name = %format!("{op} {db_name}"),
        otel.kind = "client",
        db.system = "postgresql",
        db.name = db_name,
        db.operation = %op,
        db.statement = bounded(sql),
        fraiseql.tenant = tenant.unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_named_by_their_first_keyword_and_bounded() {
        assert_eq!(operation("  SELECT 1"), "SELECT");
        assert_eq!(operation("WITH m AS (INSERT ...) SELECT"), "WITH");
        assert_eq!(operation("insert into t"), "insert");
        assert_eq!(operation(""), "SQL");
        assert_eq!(operation(&"x".repeat(40)), "SQL");
        let long = "é".repeat(MAX_STATEMENT);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_STATEMENT && long.starts_with(cut));
    }

    #[test]
    fn off_means_no_span_and_no_context() {
        assert!(!enabled());
        assert!(sql("tenant", None, "SELECT 1").is_none());
        assert!(otel_span!("graphql.plan").is_none());
        assert!(otel_child_span!("graphql.plan").is_none());
        assert_eq!(current_traceparent(), None);
        assert_eq!(current_trace_id(), None);
    }
}
