//! Logs and OpenTelemetry traces for a server process. Without `[tracing] otlp_endpoint` (and
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) this is the log subscriber alone: no exporter, no OpenTelemetry
//! layer, and the engine's spans stay `Span::none()`. With one, spans of fraiseql's own crates go
//! to `<endpoint>/v1/traces` as OTLP protobuf over HTTP (batched on the SDK's thread, so a slow
//! collector never holds a request), the W3C trace context is read from and written to requests,
//! outbox rows and NATS messages, and every log line inside a trace carries its `trace_id`.

use fraiseql_config::{Config, LogFormat};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter cannot be built.
    #[error("[tracing] otlp_endpoint {endpoint}: {reason}")]
    Exporter {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// The installed exporter; [`Telemetry::shutdown`] sends what is still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (blocks up to its export timeout: call it off the async
    /// runtime's workers, e.g. in `spawn_blocking`).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: the last spans were not exported: {e}");
            }
        }
    }
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,async_nats=warn"))
}

/// Logs as `[logging] format` says and, with `[tracing] otlp_endpoint`, exports traces. Keep the
/// returned value until the process ends and [`Telemetry::shutdown`] it then.
pub fn init_telemetry(config: &Config) -> Result<Telemetry, TelemetryError> {
    let format = config.logging.format;
    let Some(endpoint) = &config.tracing.otlp_endpoint else {
        crate::init_tracing_as(format);
        return Ok(Telemetry::default());
    };
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint.clone()
    } else {
        format!("{endpoint}/v1/traces")
    };
    // reqwest has no TLS backend of its own here: https endpoints use ring, the build's one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
    let ratio = config.tracing.sample_ratio;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // A request that arrives inside a trace follows its caller's decision.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.tracing.service_name.clone())
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("fraiseql");
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // fraiseql's spans and the events inside them; not the dependencies'.
        .with_filter(filter_fn(|m| m.target().starts_with("fraiseql")));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.event_format(WithTraceId::text()).boxed(),
        LogFormat::Json => fmt
            .event_format(WithTraceId::json())
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(env_filter()))
        .with(otel)
        .try_init();
    if installed.is_ok() {
        fraiseql_engine::telemetry::enable();
    }
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The stock text or JSON line, with the current trace's id: `"trace_id":"…"` first in a JSON
/// object, ` trace_id=…` at the end of a text line.
struct WithTraceId {
    json: Option<tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>>,
    text: tracing_subscriber::fmt::format::Format,
}

impl WithTraceId {
    fn text() -> Self {
        Self {
            json: None,
            text: tracing_subscriber::fmt::format(),
        }
    }

    fn json() -> Self {
        Self {
            json: Some(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            ),
            text: tracing_subscriber::fmt::format(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for WithTraceId
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let trace_id = ctx
            .lookup_current()
            .and_then(|_| fraiseql_engine::telemetry::current_trace_id());
        let mut line = String::new();
        match &self.json {
            Some(json) => json.format_event(ctx, Writer::new(&mut line), event)?,
            None => self.text.format_event(ctx, Writer::new(&mut line), event)?,
        }
        let Some(id) = trace_id else {
            return writer.write_str(&line);
        };
        match (&self.json, line.strip_prefix('{')) {
            (Some(_), Some(rest)) => write!(writer, "{{\"trace_id\":\"{id}\",{rest}"),
            _ => {
                let body = line.strip_suffix('\n').unwrap_or(&line);
                writeln!(writer, "{body} trace_id={id}")
            }
        }
    }
}
