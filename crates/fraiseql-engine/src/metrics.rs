//! Prometheus metrics: counters and gauges by name and labels, rendered in the text format for
//! `GET /metrics`. Small on purpose: a map behind a lock, touched once per event or request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    gauges: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    families: Mutex<Families>,
}

/// `# HELP` lines, by metric name.
fn help(name: &str) -> &'static str {
    match name {
        "fraiseql_nats_events_processed" => "Messages a subscriber handled and acknowledged.",
        "fraiseql_nats_consumer_lag" => "Messages of a consumer group not yet delivered.",
        "fraiseql_nats_handler_failures_total" => {
            "Subscriber handler failures (redelivered later)."
        }
        "fraiseql_nats_dead_letters_total" => "Messages moved to the dead letters.",
        "fraiseql_outbox_events_total" => "Events written to an outbox with their mutation.",
        "fraiseql_outbox_published_total" => {
            "Outbox events published to JetStream and marked sent."
        }
        "fraiseql_outbox_publish_failures_total" => {
            "Failed publish attempts (retried by the sweeper)."
        }
        "fraiseql_outbox_backlog" => "Events committed and not yet published, as last seen.",
        "fraiseql_tenant_requests_total" => "GraphQL requests by tenant.",
        "fraiseql_tenant_errors_total" => "GraphQL errors by tenant and code.",
        "fraiseql_tenant_latency_seconds" => {
            "GraphQL request latency by tenant and operation type."
        }
        _ => "",
    }
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Families) -> R) -> R {
        let mut g = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// Adds `by` to counter `name{labels}`.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: f64) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.with(|f| {
            *f.counters
                .entry(name)
                .or_default()
                .entry(labels)
                .or_default() += by
        });
    }

    /// Sets gauge `name{labels}`.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.with(|f| {
            f.gauges.entry(name).or_default().insert(labels, value);
        });
    }

    /// Records `seconds` in histogram `name{labels}`.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.with(|f| {
            let h = f
                .histograms
                .entry(name)
                .or_default()
                .entry(labels)
                .or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        });
    }

    /// Current value of counter or gauge `name{labels}` (0 if never set).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matches = |l: &Labels| {
            l.len() == labels.len() && l.iter().zip(labels).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
        };
        self.with(|f| {
            f.counters
                .get(name)
                .or_else(|| f.gauges.get(name))
                .and_then(|m| m.iter().find(|(l, _)| matches(l)).map(|(_, v)| *v))
                .unwrap_or(0.0)
        })
    }

    /// Sum of counter `name` over all label values.
    pub fn total(&self, name: &str) -> f64 {
        self.with(|f| f.counters.get(name).map_or(0.0, |m| m.values().sum()))
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        self.with(|f| {
            let mut out = String::new();
            for (kind, fams) in [("counter", &f.counters), ("gauge", &f.gauges)] {
                for (name, series) in fams.iter() {
                    let _ = writeln!(out, "# HELP {name} {}", help(name));
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                    for (labels, v) in series {
                        let body: Vec<String> = labels
                            .iter()
                            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                            .collect();
                        if body.is_empty() {
                            let _ = writeln!(out, "{name} {v}");
                        } else {
                            let _ = writeln!(out, "{name}{{{}}} {v}", body.join(","));
                        }
                    }
                }
            }
            for (name, series) in &f.histograms {
                let _ = writeln!(out, "# HELP {name} {}", help(name));
                let _ = writeln!(out, "# TYPE {name} histogram");
                for (labels, h) in series {
                    let base: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                        .collect();
                    let with = |extra: String| {
                        let mut all = base.clone();
                        all.push(extra);
                        all.join(",")
                    };
                    for (bound, c) in BUCKETS.iter().zip(h.counts) {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{{{}}} {c}",
                            with(format!("le=\"{bound}\""))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{}}} {}",
                        with("le=\"+Inf\"".to_owned()),
                        h.count
                    );
                    let joined = base.join(",");
                    let _ = writeln!(out, "{name}_sum{{{joined}}} {}", h.sum);
                    let _ = writeln!(out, "{name}_count{{{joined}}} {}", h.count);
                }
            }
            out
        })
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let m = Metrics::default();
        m.add(
            "fraiseql_nats_events_processed",
            &[
                ("tenant_id", "acme"),
                ("event_type", "analytics.project_created"),
            ],
            1.0,
        );
        m.add(
            "fraiseql_nats_events_processed",
            &[
                ("tenant_id", "acme"),
                ("event_type", "analytics.project_created"),
            ],
            2.0,
        );
        m.set("fraiseql_nats_consumer_lag", &[("consumer", "a\"b")], 7.0);
        assert_eq!(
            m.get(
                "fraiseql_nats_events_processed",
                &[
                    ("tenant_id", "acme"),
                    ("event_type", "analytics.project_created")
                ]
            ),
            3.0
        );
        insta::assert_snapshot!(m.render(), @r#"
        # HELP fraiseql_nats_events_processed Messages a subscriber handled and acknowledged.
        # TYPE fraiseql_nats_events_processed counter
        fraiseql_nats_events_processed{tenant_id="acme",event_type="analytics.project_created"} 3
        # HELP fraiseql_nats_consumer_lag Messages of a consumer group not yet delivered.
        # TYPE fraiseql_nats_consumer_lag gauge
        fraiseql_nats_consumer_lag{consumer="a\"b"} 7
        "#);
    }
}
