//! The socket beneath a pooled connection, lent to a read so that its whole transaction goes out
//! with one Sync.
//!
//! tokio-postgres ends every statement with a Sync. A read's BEGIN, context, query and COMMIT
//! therefore cost PostgreSQL four ReadyForQuery cycles, each flushed on its own, and this server
//! as many wake-ups, where pgbench's pipeline costs one (docs/benchmarks.md compares PostgreSQL's
//! CPU per request under each). tokio-postgres lets nobody choose where Syncs go, and no
//! maintained driver does while keeping tokio-postgres's API (which everything else here uses)
//! and its start-up (auth, SCRAM). So a connection is opened on a socket of ours ([`open`]: TCP
//! or Unix, TLS negotiated here), handed to tokio-postgres as [`DriverIo`], and lent to a read
//! between the driver's requests ([`Wire::lend`]).
//!
//! The socket is lent only at a protocol boundary: [`DriverIo`] frames what the driver writes
//! and reads, and counts its Syncs (and simple queries) against the ReadyForQuery messages it
//! read. Lending needs every one answered, nothing half written or half read, and nothing
//! written after the last Sync. While lent, the driver's reads and writes wait; bytes read past
//! the read's own ReadyForQuery (an asynchronous notice) are handed to the driver. A lend that
//! is dropped before its ReadyForQuery leaves the socket mid-protocol: the connection is then
//! broken, the driver sees an error and the pool closes it.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

use super::TlsMode;

/// The transport beneath the protocol.
enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Finds message boundaries in one direction of the protocol: a type byte (none for the
/// start-up message) and a length that counts itself, then the body.
#[derive(Debug)]
pub(crate) struct Framer {
    untyped: bool,
    header: [u8; 5],
    have: usize,
    body_left: usize,
}

impl Framer {
    /// A direction whose first message has no type byte (what the client sends).
    pub(crate) fn startup() -> Self {
        Self {
            untyped: true,
            header: [0; 5],
            have: 0,
            body_left: 0,
        }
    }

    /// A direction of typed messages (what the server sends).
    pub(crate) fn typed() -> Self {
        Self {
            untyped: false,
            ..Self::startup()
        }
    }

    /// Between two messages.
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.body_left == 0
    }

    /// Reads `bytes`, calling `on` with each message's type as its header completes (0 for the
    /// untyped start-up message). Linear in `bytes`.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(u8)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let size = if self.untyped { 4 } else { 5 };
            let n = (size - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == size {
                let (kind, len) = if self.untyped {
                    (0, &self.header[..4])
                } else {
                    (self.header[0], &self.header[1..5])
                };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                self.body_left = len.saturating_sub(4);
                self.have = 0;
                self.untyped = false;
                on(kind);
            }
        }
    }
}

struct State {
    io: Io,
    lent: bool,
    broken: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// Read past a lent read's end: the driver's.
    pushback: BytesMut,
    out: Framer,
    inn: Framer,
    /// The driver's Syncs and simple queries, and its start-up: each is answered by one
    /// ReadyForQuery.
    requests: u64,
    /// ReadyForQuery messages the driver read.
    answered: u64,
    /// The driver wrote a message after its last Sync (a request still being written).
    unsynced: bool,
}

impl State {
    fn quiet(&self) -> bool {
        !self.lent
            && !self.broken
            && !self.unsynced
            && self.requests == self.answered
            && self.out.at_boundary()
            && self.inn.at_boundary()
            && self.pushback.is_empty()
    }

    fn wake_driver(&mut self) {
        if let Some(w) = &self.read_waker {
            w.wake_by_ref();
        }
        if let Some(w) = &self.write_waker {
            w.wake_by_ref();
        }
    }
}

fn remember(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    // Every critical section leaves the state whole: a panic elsewhere cannot corrupt it.
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn abandoned() -> io::Error {
    io::Error::other("a read left the connection mid-protocol")
}

/// The socket as tokio-postgres sees it: waits while the socket is lent.
pub(crate) struct DriverIo(Shared);

impl DriverIo {
    /// The state, when the driver may use the socket now; else what to answer it (an error
    /// once broken, `Pending` while lent). The driver's waker is kept either way (`waker`
    /// picks the direction's slot): a lend's reads and writes take over the socket's wake-ups,
    /// so the driver is woken when the lend ends, to wait on the socket again.
    fn turn(
        &self,
        cx: &Context<'_>,
        waker: fn(&mut State) -> &mut Option<Waker>,
    ) -> Result<MutexGuard<'_, State>, Poll<io::Error>> {
        let mut st = lock(&self.0);
        if st.broken {
            return Err(Poll::Ready(abandoned()));
        }
        remember(waker(&mut st), cx);
        if st.lent {
            return Err(Poll::Pending);
        }
        Ok(st)
    }
}

impl AsyncRead for DriverIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = match self.turn(cx, |s| &mut s.read_waker) {
            Ok(st) => st,
            Err(p) => return p.map(Err),
        };
        let State {
            io,
            pushback,
            inn,
            answered,
            ..
        } = &mut *st;
        let count = |kind: u8| {
            if kind == b'Z' {
                *answered += 1;
            }
        };
        if !pushback.is_empty() {
            let n = pushback.len().min(buf.remaining());
            let chunk = pushback.split_to(n);
            inn.feed(&chunk, count);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            inn.feed(&buf.filled()[before..], count);
        }
        r
    }
}

impl AsyncWrite for DriverIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = match self.turn(cx, |s| &mut s.write_waker) {
            Ok(st) => st,
            Err(p) => return p.map(Err),
        };
        let State {
            io,
            out,
            requests,
            unsynced,
            ..
        } = &mut *st;
        let r = Pin::new(io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            out.feed(&data[..n], |kind| match kind {
                // Sync, a simple query, the start-up: one ReadyForQuery each.
                b'S' | b'Q' | 0 => {
                    *requests += 1;
                    *unsynced = false;
                }
                // Password and SASL answers belong to the start-up.
                b'p' => {}
                _ => *unsynced = true,
            });
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.turn(cx, |s| &mut s.write_waker) {
            Ok(mut st) => Pin::new(&mut st.io).poll_flush(cx),
            Err(p) => p.map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.turn(cx, |s| &mut s.write_waker) {
            Ok(mut st) => Pin::new(&mut st.io).poll_shutdown(cx),
            // Broken: nothing to shut down politely.
            Err(Poll::Ready(_)) => Poll::Ready(Ok(())),
            Err(Poll::Pending) => Poll::Pending,
        }
    }
}

/// A connection's socket, lendable between the driver's requests.
pub struct Wire(Shared);

impl Wire {
    /// The socket, if the driver is between requests: a read's own until [`Lent::finish`].
    pub fn lend(&self) -> Option<Lent<'_>> {
        let mut st = lock(&self.0);
        if !st.quiet() {
            return None;
        }
        st.lent = true;
        Some(Lent {
            shared: &self.0,
            finished: false,
        })
    }
}

/// The socket, lent to one read.
pub struct Lent<'a> {
    shared: &'a Shared,
    finished: bool,
}

impl Lent<'_> {
    /// Writes all of `data` and flushes it.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n =
                std::future::poll_fn(|cx| Pin::new(&mut lock(self.shared).io).poll_write(cx, data))
                    .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        std::future::poll_fn(|cx| Pin::new(&mut lock(self.shared).io).poll_flush(cx)).await
    }

    /// Reads what the server sent into `buf`; 0 at end of stream.
    pub async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // Grown only when nearly full: most answers fit the caller's first buffer.
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8192);
        }
        std::future::poll_fn(|cx| {
            tokio_util::io::poll_read_buf(Pin::new(&mut lock(self.shared).io), cx, buf)
        })
        .await
    }

    /// The read ended with its ReadyForQuery: the socket goes back to the driver, with `rest`
    /// (bytes read after it) for the driver to read first.
    pub fn finish(mut self, rest: BytesMut) {
        let mut st = lock(self.shared);
        st.pushback.unsplit(rest);
        self.finished = true;
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut st = lock(self.shared);
        st.lent = false;
        if !self.finished {
            st.broken = true;
        }
        st.wake_driver();
    }
}

/// A lent socket with what a read needs to send on it.
pub struct WireLease<'a> {
    /// The socket.
    pub lent: Lent<'a>,
    /// Each statement's name, and whether it must be parsed first.
    pub names: Vec<(Arc<str>, bool)>,
    /// Statements to close (pushed out of the cache).
    pub closing: Vec<Arc<str>>,
}

/// Where [`open`] connects: one host (TCP or a Unix socket directory) and its port. `None` for
/// what only the driver's own connect does: several hosts or addresses, a session that must be
/// read-write (checked after connecting), channel binding required (the driver binds to a TLS
/// channel it made itself, and here it does not see ours).
fn place(config: &tokio_postgres::Config) -> Option<(Host, u16)> {
    use tokio_postgres::config::{ChannelBinding, TargetSessionAttrs};
    let hosts = config.get_hosts();
    if hosts.len() != 1
        || !config.get_hostaddrs().is_empty()
        || config.get_ports().len() > 1
        || config.get_target_session_attrs() != TargetSessionAttrs::Any
        || config.get_channel_binding() == ChannelBinding::Require
    {
        return None;
    }
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Some((hosts[0].clone(), port))
}

/// Opens a connection on a socket of ours (see the module's comment). `Ok(None)`: this target
/// is not one it handles (several hosts) or the socket or TLS could not be set up; the caller
/// connects the driver's way, which reports the failure in the driver's words.
pub(crate) async fn open(
    config: &tokio_postgres::Config,
    tls: TlsMode,
    tls_config: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Option<(Client, Wire)>, tokio_postgres::Error> {
    let Some((host, port)) = place(config) else {
        return Ok(None);
    };
    let within = config.get_connect_timeout().copied();
    let io = match within {
        // Timed out: the driver's way reports it.
        Some(t) => tokio::time::timeout(t, socket(config, &host, port, tls, tls_config))
            .await
            .unwrap_or_default(),
        None => socket(config, &host, port, tls, tls_config).await,
    };
    let Some(io) = io else {
        return Ok(None);
    };
    let shared: Shared = Arc::new(Mutex::new(State {
        io,
        lent: false,
        broken: false,
        read_waker: None,
        write_waker: None,
        pushback: BytesMut::new(),
        out: Framer::startup(),
        inn: Framer::typed(),
        requests: 0,
        answered: 0,
        unsynced: false,
    }));
    // TLS, if any, is ours beneath: the driver speaks plain protocol over it.
    let mut plain = config.clone();
    plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, conn) = plain.connect_raw(DriverIo(shared.clone()), NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Some((client, Wire(shared))))
}

async fn socket(
    config: &tokio_postgres::Config,
    host: &Host,
    port: u16,
    tls: TlsMode,
    tls_config: Option<&Arc<rustls::ClientConfig>>,
) -> Option<Io> {
    match host {
        Host::Unix(dir) => {
            // libpq never negotiates TLS on a Unix socket; a mode that demands it is the
            // driver's to refuse.
            if !matches!(tls, TlsMode::Disable | TlsMode::Prefer) {
                return None;
            }
            let path: PathBuf = dir.join(format!(".s.PGSQL.{port}"));
            UnixStream::connect(path).await.ok().map(Io::Unix)
        }
        Host::Tcp(name) => {
            let mut s = TcpStream::connect((name.as_str(), port)).await.ok()?;
            s.set_nodelay(true).ok()?;
            if config.get_keepalives() {
                let ka = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
                socket2::SockRef::from(&s).set_tcp_keepalive(&ka).ok()?;
            }
            if tls == TlsMode::Disable {
                return Some(Io::Tcp(s));
            }
            let mut request = BytesMut::new();
            postgres_protocol::message::frontend::ssl_request(&mut request);
            s.write_all(&request).await.ok()?;
            match s.read_u8().await.ok()? {
                b'S' => {
                    let server = rustls::pki_types::ServerName::try_from(name.clone()).ok()?;
                    let connector = tokio_rustls::TlsConnector::from(tls_config?.clone());
                    let stream = connector.connect(server, s).await.ok()?;
                    Some(Io::Tls(Box::new(stream)))
                }
                b'N' if tls == TlsMode::Prefer => Some(Io::Tcp(s)),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The local server (`$FRAISEQL_TEST_PG`, else the local superuser), in `mode`.
    fn target(mode: &str) -> super::super::Target {
        let url = std::env::var("FRAISEQL_TEST_PG").unwrap_or_else(|_| {
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned()
        });
        let base = url.split('?').next().unwrap_or(&url).to_owned();
        super::super::target::parse("test", &format!("{base}?sslmode={mode}")).expect("url")
    }

    async fn opened(mode: &str) -> (Client, Wire) {
        let t = target(mode);
        open(&t.config, t.tls, t.tls_config_for_tests())
            .await
            .expect("connect")
            .expect("opened on a socket of ours")
    }

    /// Sends `sql` as a simple query on the lent socket and reads through its ReadyForQuery;
    /// returns the message types seen.
    async fn simple(lent: &mut Lent<'_>, sql: &str) -> (Vec<u8>, BytesMut) {
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut out).expect("encode");
        lent.write_all(&out).await.expect("write");
        let mut buf = BytesMut::new();
        let mut framer = Framer::typed();
        let mut kinds = Vec::new();
        let mut fed = 0;
        loop {
            framer.feed(&buf[fed..], |k| kinds.push(k));
            fed = buf.len();
            if kinds.last() == Some(&b'Z') && framer.at_boundary() {
                return (kinds, BytesMut::new());
            }
            assert!(lent.read(&mut buf).await.expect("read") > 0, "closed");
        }
    }

    async fn one(client: &Client, sql: &str) -> i32 {
        client.query_one(sql, &[]).await.expect("query").get(0)
    }

    #[test]
    fn what_only_the_driver_connects_to_is_left_to_it() {
        let place_of = |url: &str| {
            let t = super::super::target::parse("test", url).expect("url");
            place(&t.config).map(|(h, p)| (format!("{h:?}"), p))
        };
        assert_eq!(
            place_of("postgres://u@db.example:6543/x"),
            Some(("Tcp(\"db.example\")".to_owned(), 6543))
        );
        assert!(place_of("postgres://u@/x?host=/run/postgresql").is_some());
        for url in [
            "postgres://u@a,b/x",
            "postgres://u@a:1,a:2/x",
            "postgres://u@a/x?target_session_attrs=read-write",
            "postgres://u@a/x?channel_binding=require",
            "host=a hostaddr=127.0.0.1 user=u dbname=x",
        ] {
            assert_eq!(place_of(url), None, "{url}");
        }
    }

    #[tokio::test]
    async fn a_lent_socket_is_answered_then_goes_back_to_the_driver() {
        let (client, wire) = opened("disable").await;
        assert_eq!(one(&client, "SELECT 1").await, 1);
        let mut lent = wire.lend().expect("the driver is between requests");
        assert!(wire.lend().is_none(), "lent once at a time");
        let (kinds, rest) = simple(&mut lent, "SELECT 2").await;
        assert_eq!(kinds, b"TDCZ".to_vec());
        lent.finish(rest);
        // The driver carries on, its statements and the socket's wake-ups intact.
        assert_eq!(one(&client, "SELECT 3").await, 3);
        assert!(wire.lend().is_some());
    }

    #[tokio::test]
    async fn the_socket_is_not_lent_while_the_driver_waits_for_an_answer() {
        let (client, wire) = opened("disable").await;
        let client = Arc::new(client);
        let c = client.clone();
        let slow = tokio::spawn(async move { c.execute("SELECT pg_sleep(0.3)", &[]).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            wire.lend().is_none(),
            "lent in the middle of the driver's request"
        );
        slow.await.expect("task").expect("query");
        // The statement's Close (sent as it is dropped) is answered soon after.
        let mut lent = None;
        for _ in 0..100 {
            lent = wire.lend();
            if lent.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(lent.is_some(), "never lent once the driver was answered");
    }

    #[tokio::test]
    async fn a_lend_dropped_midway_closes_the_connection() {
        let (client, wire) = opened("disable").await;
        let mut lent = wire.lend().expect("lent");
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::query("SELECT pg_sleep(0.2)", &mut out)
            .expect("encode");
        lent.write_all(&out).await.expect("write");
        drop(lent);
        assert!(
            client.execute("SELECT 1", &[]).await.is_err(),
            "a broken connection answered"
        );
        assert!(client.is_closed());
        assert!(wire.lend().is_none());
    }

    #[tokio::test]
    async fn tls_is_negotiated_beneath_the_driver() {
        let (client, wire) = opened("require").await;
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("query")
            .get(0);
        assert!(ssl, "the connection is not encrypted");
        let mut lent = wire.lend().expect("lent");
        let (kinds, rest) = simple(&mut lent, "SELECT 1").await;
        assert_eq!(kinds, b"TDCZ".to_vec());
        lent.finish(rest);
        assert_eq!(one(&client, "SELECT 4").await, 4);
    }

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn framer_finds_every_message_on_any_cut() {
        let mut stream = Vec::new();
        let startup = {
            let mut v = 12u32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 3, 0, 0, 0, 0, 0, 0]);
            v
        };
        stream.extend_from_slice(&startup);
        stream.extend(msg(b'P', b"s1\0SELECT 1\0\0\0"));
        stream.extend(msg(b'S', b""));
        stream.extend(msg(b'Q', b"SELECT 2\0"));
        stream.extend(msg(b'X', b""));
        for cut in 0..=stream.len() {
            for step in [1, 3, 7] {
                let mut f = Framer::startup();
                let mut seen = Vec::new();
                f.feed(&stream[..cut], |k| seen.push(k));
                for chunk in stream[cut..].chunks(step) {
                    f.feed(chunk, |k| seen.push(k));
                }
                assert_eq!(
                    seen,
                    vec![0, b'P', b'S', b'Q', b'X'],
                    "cut {cut} step {step}"
                );
                assert!(f.at_boundary());
            }
        }
        let mut f = Framer::typed();
        let z = msg(b'Z', b"I");
        f.feed(&z[..3], |_| {});
        assert!(!f.at_boundary(), "a half-read header is not a boundary");
        f.feed(&z[3..5], |_| {});
        assert!(!f.at_boundary(), "a body still to come is not a boundary");
        f.feed(&z[5..], |_| {});
        assert!(f.at_boundary());
    }
}
