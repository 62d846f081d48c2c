//! A read's whole transaction on the connection's own socket, ended by one Sync: BEGIN, the
//! context, the statements and COMMIT as Bind/Execute pairs (Parse first where the connection
//! has not prepared a statement yet), the way `pgbench` pipelines them. PostgreSQL then answers
//! in one flush where tokio-postgres's Sync per statement costs it four
//! (`connections/wire.rs` says why and how the socket is borrowed).
//!
//! Only success is kept simple: any error answer leaves the connection to be closed (its
//! transaction is aborted and its statement names may name unparsed statements), and the
//! fields get the same errors the driver's path would give them.

use bytes::{Bytes, BytesMut};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

use super::{FieldResult, JsonText};
use crate::connections::wire::WireLease;
use crate::connections::Lease;
use crate::error::{connection_lost, sqlstate_error, statement_failed, GraphqlError};

/// One statement of the transaction: its text and its parameters (text format, `None` is
/// NULL).
pub(crate) struct Step<'a> {
    pub sql: &'a str,
    pub params: Vec<Option<&'a str>>,
}

/// How each step ended.
enum Answer {
    /// Its first row's first column (`None`: no row, or NULL).
    Done(Option<Bytes>),
    /// PostgreSQL's error: SQLSTATE and message.
    Failed(String, String),
    /// Not run: an earlier step failed.
    Skipped,
}

/// Runs `steps` (BEGIN, the context, the fields' statements, COMMIT) on `lease`'s socket.
/// `None` when the socket cannot be lent now (the caller takes the driver's path); else one
/// result per field (`steps` minus the first two and the last), for `fields` (their names).
pub(crate) async fn run(
    lease: &Lease,
    steps: &[Step<'_>],
    fields: &[&str],
) -> Option<Vec<FieldResult>> {
    let sqls: Vec<&str> = steps.iter().map(|s| s.sql).collect();
    let WireLease {
        mut lent,
        names,
        closing,
    } = lease.lend(&sqls)?;
    lease.set_dirty();
    let mut out = BytesMut::with_capacity(512);
    if let Err(e) = encode(&mut out, steps, &names, &closing) {
        // Only a NUL inside a statement's text fails here, which generated SQL never holds.
        // Nothing was sent, but the names were kept: the connection is left to be closed.
        lent.finish(BytesMut::new());
        tracing::error!(error = %e, "statement not encodable");
        return Some(every(fields, |_| statement_failed()));
    }
    let answers = async {
        lent.write_all(&out).await?;
        let (answers, rest) = receive(&mut lent, steps.len()).await?;
        Ok::<_, std::io::Error>((answers, rest))
    }
    .await;
    let answers = match answers {
        Ok((answers, rest)) => {
            lent.finish(rest);
            answers
        }
        Err(e) => {
            // `lent` dropped unfinished: the connection is broken and will be closed.
            tracing::error!(error = %e, "database connection lost");
            drop(lent);
            return Some(every(fields, |_| connection_lost()));
        }
    };
    let last = answers.len() - 1;
    // BEGIN, the context or COMMIT failed: every field fails with it (without the context no
    // row is visible, so an error must not pass for an empty answer).
    for i in [0, 1, last] {
        match &answers[i] {
            Answer::Failed(code, message) => {
                return Some(every(fields, |f| error(code, message, f)));
            }
            // COMMIT is skipped after a field's error: the field says what failed.
            Answer::Skipped if i != last => {
                return Some(every(fields, |f| error("25P02", "", f)));
            }
            _ => {}
        }
    }
    let clean = answers.iter().all(|a| matches!(a, Answer::Done(_)));
    let results = answers[2..last]
        .iter()
        .zip(fields)
        .map(|(a, f)| match a {
            Answer::Done(None) => Ok(None),
            Answer::Done(Some(b)) => Ok(Some(JsonText::Shared(b.clone()))),
            Answer::Failed(c, m) => Err(error(c, m, f)),
            Answer::Skipped => Err(error("25P02", "", f)),
        })
        .collect();
    if clean {
        lease.set_clean();
    }
    Some(results)
}

/// Every field failed, each with `e` of its name.
fn every(fields: &[&str], e: impl Fn(&str) -> GraphqlError) -> Vec<FieldResult> {
    fields.iter().map(|f| Err(e(f))).collect()
}

fn error(code: &str, message: &str, field: &str) -> GraphqlError {
    sqlstate_error(code, message, field).unwrap_or_else(|| {
        tracing::error!(field, code, message, "statement failed");
        statement_failed()
    })
}

/// The messages: Close for statements pushed out of the cache, then per step Parse (if new),
/// Bind and Execute; one Sync.
fn encode(
    out: &mut BytesMut,
    steps: &[Step<'_>],
    names: &[(std::sync::Arc<str>, bool)],
    closing: &[std::sync::Arc<str>],
) -> std::io::Result<()> {
    for name in closing {
        frontend::close(b'S', name, out)?;
    }
    for (step, (name, parse)) in steps.iter().zip(names) {
        if *parse {
            frontend::parse(name, step.sql, std::iter::empty(), out)?;
        }
        let formats: &[i16] = if step.params.is_empty() { &[] } else { &[0] };
        frontend::bind(
            "",
            name,
            formats.iter().copied(),
            step.params.iter(),
            |v, buf| match v {
                Some(s) => {
                    buf.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::empty(),
            out,
        )
        .map_err(|e| match e {
            postgres_protocol::message::frontend::BindError::Conversion(e) => {
                std::io::Error::other(e)
            }
            postgres_protocol::message::frontend::BindError::Serialization(e) => e,
        })?;
        frontend::execute("", 0, out)?;
    }
    frontend::sync(out);
    Ok(())
}

/// Reads the answers to `steps` steps through ReadyForQuery; returns them and what was read
/// after it.
async fn receive(
    lent: &mut crate::connections::wire::Lent<'_>,
    steps: usize,
) -> std::io::Result<(Vec<Answer>, BytesMut)> {
    let mut buf = BytesMut::with_capacity(8192);
    let mut answers: Vec<Answer> = Vec::with_capacity(steps);
    let mut row: Option<Bytes> = None;
    let mut failed = false;
    loop {
        while let Some((kind, body)) = next_message(&mut buf)? {
            match kind {
                // ParseComplete, BindComplete, CloseComplete, NoData, and what the server may
                // send at any time: notices, parameter changes, notifications.
                b'1' | b'2' | b'3' | b'n' | b'N' | b'S' | b'A' => {}
                b'D' => {
                    if row.is_none() {
                        row = first_column(&body)?;
                    }
                }
                b'C' | b'I' => {
                    answers.push(Answer::Done(row.take()));
                }
                b'E' => {
                    let (code, message) = error_fields(&body);
                    row = None;
                    answers.push(Answer::Failed(code, message));
                    failed = true;
                }
                b'Z' => {
                    if answers.len() > steps || (!failed && answers.len() != steps) {
                        return Err(protocol("answers do not match the statements sent"));
                    }
                    while answers.len() < steps {
                        answers.push(Answer::Skipped);
                    }
                    return Ok((answers, buf));
                }
                other => {
                    return Err(protocol(&format!("unexpected message {:?}", other as char)));
                }
            }
        }
        if lent.read(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

fn protocol(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// The next whole message of `buf` (type and body), taken out of it; `None` until one is whole.
fn next_message(buf: &mut BytesMut) -> std::io::Result<Option<(u8, Bytes)>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(protocol("message length below 4"));
    }
    if buf.len() < 1 + len {
        buf.reserve(1 + len - buf.len());
        return Ok(None);
    }
    let mut msg = buf.split_to(1 + len).freeze();
    let kind = msg[0];
    let body = msg.split_off(5);
    Ok(Some((kind, body)))
}

/// A DataRow's first column (`None` if NULL or absent), sharing the message's bytes.
fn first_column(body: &Bytes) -> std::io::Result<Option<Bytes>> {
    if body.len() < 2 || u16::from_be_bytes([body[0], body[1]]) == 0 {
        return Ok(None);
    }
    if body.len() < 6 {
        return Err(protocol("short data row"));
    }
    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
    if len < 0 {
        return Ok(None);
    }
    let end = 6 + len as usize;
    if body.len() < end {
        return Err(protocol("short data row"));
    }
    Ok(Some(body.slice(6..end)))
}

/// An ErrorResponse's SQLSTATE (`C`) and message (`M`).
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.split_first() {
            Some((b'C', v)) => code = String::from_utf8_lossy(v).into_owned(),
            Some((b'M', v)) => message = String::from_utf8_lossy(v).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_whole_and_columns_shared() {
        let mut buf = BytesMut::new();
        // DataRow with one column "[1]", then half of a ReadyForQuery.
        buf.extend_from_slice(&[b'D', 0, 0, 0, 13, 0, 1, 0, 0, 0, 3, b'[', b'1', b']']);
        buf.extend_from_slice(&[b'Z', 0, 0]);
        let (kind, body) = next_message(&mut buf).expect("ok").expect("whole");
        assert_eq!(kind, b'D');
        assert_eq!(
            first_column(&body).expect("ok").as_deref(),
            Some(&b"[1]"[..])
        );
        assert!(
            next_message(&mut buf).expect("ok").is_none(),
            "half a message waits"
        );
        buf.extend_from_slice(&[0, 5, b'I']);
        let (kind, body) = next_message(&mut buf).expect("ok").expect("whole");
        assert_eq!((kind, &body[..]), (b'Z', &b"I"[..]));
        // NULL column, no column, a length that runs past the row.
        let null = Bytes::from_static(&[0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(first_column(&null).expect("ok"), None);
        assert_eq!(
            first_column(&Bytes::from_static(&[0, 0])).expect("ok"),
            None
        );
        assert!(first_column(&Bytes::from_static(&[0, 1, 0, 0, 0, 9, b'x'])).is_err());
        let mut bad = BytesMut::from(&[b'D', 0, 0, 0, 2][..]);
        assert!(next_message(&mut bad).is_err());
    }

    #[test]
    fn error_fields_are_read() {
        let body = b"SERROR\0VERROR\0C42501\0Mpermission denied for table t\0\0";
        assert_eq!(
            error_fields(body),
            (
                "42501".to_owned(),
                "permission denied for table t".to_owned()
            )
        );
    }
}
