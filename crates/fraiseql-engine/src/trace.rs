//! Federated tracing (`ftv1`): when a gateway sends `apollo-federation-include-trace: ftv1`, the
//! answer carries `extensions.ftv1`, a base64 protobuf `Trace` (Apollo's `reports.proto`) with
//! the request's wall-clock start and end, its duration, and one node per root field with its
//! timing and errors. Nested fields get no node of their own: they are computed inside the one
//! SQL statement of their root field, so the root field's time is theirs.
//!
//! Encoded by hand (a few fields of one message): a protobuf code generator and its runtime
//! would be the build's heaviest dependency for this.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::error::GraphqlError;

/// The header a gateway sets to ask for a trace.
pub const TRACE_HEADER: &str = "apollo-federation-include-trace";

/// One root field of a trace.
#[derive(Debug, Clone, Default)]
pub struct FieldNode {
    /// Its response key.
    pub response_name: String,
    /// Its field name when aliased.
    pub original_field_name: Option<String>,
    /// Its GraphQL type (`[_Entity]!`).
    pub type_name: String,
    /// The root type (`Query`).
    pub parent_type: String,
    /// Since the request started.
    pub start: Duration,
    /// Since the request started.
    pub end: Duration,
    /// Error messages at this field.
    pub errors: Vec<String>,
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn uint(out: &mut Vec<u8>, field: u32, n: u64) {
    tag(out, field, 0);
    varint(out, n);
}

fn timestamp(t: SystemTime) -> Vec<u8> {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = Vec::with_capacity(12);
    uint(&mut out, 1, d.as_secs());
    uint(&mut out, 2, u64::from(d.subsec_nanos()));
    out
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn node(f: &FieldNode) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(&mut out, 1, f.response_name.as_bytes());
    if !f.type_name.is_empty() {
        bytes(&mut out, 3, f.type_name.as_bytes());
    }
    uint(&mut out, 8, nanos(f.start));
    uint(&mut out, 9, nanos(f.end));
    for message in &f.errors {
        let mut e = Vec::new();
        bytes(&mut e, 1, message.as_bytes());
        let json = serde_json::json!({ "message": message }).to_string();
        bytes(&mut e, 4, json.as_bytes());
        bytes(&mut out, 11, &e);
    }
    bytes(&mut out, 13, f.parent_type.as_bytes());
    if let Some(o) = &f.original_field_name {
        bytes(&mut out, 14, o.as_bytes());
    }
    out
}

/// The `Trace` message of a request that started at `start` and took `duration`.
pub fn encode(start: SystemTime, duration: Duration, fields: &[FieldNode]) -> Vec<u8> {
    let mut root = Vec::new();
    for f in fields {
        bytes(&mut root, 12, &node(f));
    }
    let mut out = Vec::new();
    bytes(&mut out, 3, &timestamp(start + duration));
    bytes(&mut out, 4, &timestamp(start));
    uint(&mut out, 11, nanos(duration));
    bytes(&mut out, 14, &root);
    // field_execution_weight = 1.0 (a double: wire type 1).
    tag(&mut out, 31, 1);
    out.extend_from_slice(&1.0f64.to_le_bytes());
    out
}

/// `extensions.ftv1`: the trace, base64 (standard alphabet, padded).
pub fn ftv1(start: SystemTime, duration: Duration, fields: &[FieldNode]) -> String {
    base64::engine::general_purpose::STANDARD.encode(encode(start, duration, fields))
}

/// Attaches `errors` to the node of their root field (by the first element of their path).
pub fn attach_errors(fields: &mut [FieldNode], errors: &[GraphqlError]) {
    for e in errors {
        let Some(key) = e.path.first().and_then(serde_json::Value::as_str) else {
            continue;
        };
        if let Some(f) = fields.iter_mut().find(|f| f.response_name == key) {
            f.errors.push(e.message.clone());
        }
    }
}

/// When a traced request started: wall clock (for the trace) and monotonic (for its duration).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    wall: SystemTime,
    at: std::time::Instant,
}

impl Started {
    /// Now.
    pub fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            at: std::time::Instant::now(),
        }
    }
}

/// The pipeline's trace stage: `extensions.ftv1` on `body`, one node per root field answered by
/// the engine (not `__typename` or introspection, as Apollo's), timed as the whole execution
/// (nested fields are computed inside their root field's statement).
pub(crate) fn attach(
    body: &mut crate::response::ResponseBody,
    started: Started,
    op: &apollo_compiler::executable::Operation,
    plan: &fraiseql_plan::Plan,
) {
    use fraiseql_plan::RootKind;
    let took = started.at.elapsed();
    let parent = op.object_type().to_string();
    let mut nodes: Vec<FieldNode> = plan
        .fields
        .iter()
        .filter(|f| !matches!(f.kind, RootKind::Typename(_) | RootKind::Introspection))
        .map(|f| {
            let def = op.selection_set.selections.iter().find_map(|s| match s {
                apollo_compiler::executable::Selection::Field(x)
                    if x.response_key().as_str() == f.response_key =>
                {
                    Some(x)
                }
                _ => None,
            });
            FieldNode {
                response_name: f.response_key.clone(),
                original_field_name: def
                    .filter(|d| d.alias.is_some())
                    .map(|d| d.name.to_string()),
                type_name: def.map(|d| d.definition.ty.to_string()).unwrap_or_default(),
                parent_type: parent.clone(),
                start: Duration::ZERO,
                end: took,
                errors: Vec::new(),
            }
        })
        .collect();
    attach_errors(&mut nodes, &body.errors);
    let value = serde_json::Value::String(ftv1(started.wall, took, &nodes));
    body.extensions.push(("ftv1", value.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (field number, varint value or bytes) of one message.
    fn fields(mut b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut n = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = b[0];
                *b = &b[1..];
                n |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            n
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let value = match key & 7 {
                0 => Ok(varint(&mut b)),
                1 => {
                    let v = b[..8].to_vec();
                    b = &b[8..];
                    Err(v)
                }
                _ => {
                    let len = varint(&mut b) as usize;
                    let v = b[..len].to_vec();
                    b = &b[len..];
                    Err(v)
                }
            };
            out.push((key >> 3, value));
        }
        out
    }

    #[test]
    fn a_trace_carries_times_duration_and_one_node_per_root_field() {
        let start = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let f = FieldNode {
            response_name: "_entities".into(),
            type_name: "[_Entity]!".into(),
            parent_type: "Query".into(),
            start: Duration::from_nanos(10),
            end: Duration::from_nanos(20),
            errors: vec!["boom".into()],
            ..FieldNode::default()
        };
        let trace = fields(&encode(start, Duration::from_nanos(300), &[f]));
        let numbers: Vec<u64> = trace.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [3, 4, 11, 14, 31]);
        let end = fields(trace[0].1.as_ref().expect_err("a length-delimited field"));
        assert_eq!(end[0], (1, Ok(1_700_000_000)));
        assert_eq!(end[1], (2, Ok(305)));
        assert_eq!(trace[2].1, Ok(300));
        assert_eq!(trace[4].1, Err(1.0f64.to_le_bytes().to_vec()));
        let root = fields(trace[3].1.as_ref().expect_err("a length-delimited field"));
        let node = fields(root[0].1.as_ref().expect_err("a length-delimited field"));
        assert_eq!(root[0].0, 12);
        assert_eq!(node[0], (1, Err(b"_entities".to_vec())));
        assert_eq!(node[1], (3, Err(b"[_Entity]!".to_vec())));
        assert_eq!(node[2], (8, Ok(10)));
        assert_eq!(node[3], (9, Ok(20)));
        let error = fields(node[4].1.as_ref().expect_err("a length-delimited field"));
        assert_eq!(error[0], (1, Err(b"boom".to_vec())));
        assert_eq!(node[5], (13, Err(b"Query".to_vec())));
    }
}
