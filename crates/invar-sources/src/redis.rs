//! Redis sources: one auto-reconnecting [`ConnectionManager`] per source; `redis` probes read
//! a key or a key pattern into a table.
//!
//! - Patterns with `{captures}` are walked with `SCAN … MATCH … COUNT 1000` (never `KEYS`, so
//!   a large keyspace does not block the server); each key is matched against a regex built
//!   from the pattern, its captures become columns, and keys that do not fit are skipped.
//! - The key cap (`max_keys`, default 100,000) is checked while scanning: past it the probe is
//!   an error naming the cap — never a silently truncated table.
//! - The keys' contents are read in pipelined batches (one round trip per batch); a key of
//!   the wrong type (`WRONGTYPE`) is an error naming the key.
//! - Values are text, exactly as stored (nothing is parsed); zset scores are floats.
//! - A literal sorted set read only by set checks (`same`, `subset`, `disjoint`) goes straight
//!   into their key sets: one `ZRANGE … WITHSCORES` on a connection of its own, parsed as it
//!   streams in (no reply tree, no table).
//! - `rediss://` is TLS through rustls (ring): the server's certificate is checked against the
//!   source's `tls.ca_file`, or the bundled webpki roots; `tls.cert_file` / `tls.key_file` is
//!   a client certificate (mutual TLS). A TLS failure is a connect error that says so.
//! - Every error passes through [`Secret::scrub`]: the URL's password never appears.

use crate::sink::RowSink;
use invar_core::{
    RedisKind, RedisPattern, RedisProbe, RedisSource, RedisTls, Secret, Table, Value,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Keys asked for per SCAN call.
const SCAN_COUNT: usize = 1000;
/// Keys read per pipelined round trip.
const READ_BATCH: usize = 500;
/// Members asked for per ZSCAN call, when a sorted set is read straight into key sets.
const ZSCAN_COUNT: usize = 10_000;
/// Connecting gives up after this, at most (or the source's timeout, if shorter).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected Redis source.
#[derive(Clone)]
pub struct RedisConn {
    manager: ConnectionManager,
    secret: Secret,
    timeout: Duration,
    max_keys: u64,
    /// Probes read (for [`RedisConn::reads`]).
    reads: Arc<AtomicU64>,
    /// Where and how to connect, for a sorted set streamed on its own connection.
    info: redis::ConnectionInfo,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("url", &self.secret)
            .finish_non_exhaustive()
    }
}

/// Why a read failed, and whether the source itself is unreachable (connection lost, timed
/// out) rather than the probe being wrong (a key of the wrong type, the cap).
#[derive(Debug, Clone)]
pub struct RedisError {
    pub message: String,
    pub source_down: bool,
}

impl RedisConn {
    /// Connects (and pings) within the source's timeout.
    pub async fn connect(src: &RedisSource) -> Result<RedisConn, String> {
        let secret = src.url.clone();
        let shown = secret.redacted();
        let client = if secret.expose().starts_with("rediss://") {
            let certs = tls_certificates(src.tls.as_ref())?;
            ring_provider();
            redis::Client::build_with_tls(secret.expose(), certs)
        } else {
            redis::Client::open(secret.expose())
        }
        .map_err(|e| secret.scrub(&format!("invalid redis url `{shown}`: {}", reason(&e))))?;
        let connect_timeout = src.timeout.min(MAX_CONNECT_TIMEOUT);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(src.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let info = client.get_connection_info().clone();
        let connect = async {
            let mut m = ConnectionManager::new_with_config(client, config).await?;
            redis::cmd("PING").query_async::<()>(&mut m).await?;
            Ok::<_, redis::RedisError>(m)
        };
        let manager = match tokio::time::timeout(connect_timeout * 2, connect).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                return Err(secret.scrub(&format!("cannot connect to `{shown}`: {}", reason(&e))));
            }
            Err(_) => {
                return Err(format!(
                    "cannot connect to `{shown}`: timed out after {}",
                    invar_core::units::format_duration(connect_timeout * 2)
                ));
            }
        };
        Ok(RedisConn {
            manager,
            secret,
            timeout: src.timeout,
            max_keys: src.max_keys,
            reads: Arc::default(),
            info,
        })
    }

    /// Probes read through this connection so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Reads one probe into a table: `key`, the kind's columns, then one column per capture.
    pub async fn read(&self, probe: &RedisProbe) -> Result<Table, RedisError> {
        let sink = self.read_into(probe, RowSink::table()).await?;
        Ok(sink.into_table().unwrap_or_default())
    }

    /// [`RedisConn::read`], each row going into `sink` as its batch arrives (no reply is held
    /// beside the rows). One sorted set read into key sets is one `ZRANGE` parsed as it
    /// streams in ([`RedisConn::zrange_stream`]); over a unix socket or TLS it is walked with
    /// `ZSCAN` pages instead (every member present for the whole walk is read; a member moved
    /// by a concurrent write may be read twice, and key sets count it once).
    pub async fn read_into(
        &self,
        probe: &RedisProbe,
        mut sink: RowSink,
    ) -> Result<RowSink, RedisError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let pattern = RedisPattern::parse(&probe.pattern).map_err(|m| RedisError {
            message: m,
            source_down: false,
        })?;
        let cap = probe.max_keys.unwrap_or(self.max_keys);
        let keys = match &pattern.glob {
            None => vec![(probe.pattern.as_bytes().to_vec(), Vec::new())],
            Some(glob) => {
                let re =
                    regex::Regex::new(pattern.regex.as_deref().unwrap_or("^$")).map_err(|e| {
                        RedisError {
                            message: format!("pattern `{}`: {e}", probe.pattern),
                            source_down: false,
                        }
                    })?;
                self.scan(glob, &re, &pattern.captures, cap, &probe.pattern)
                    .await?
            }
        };
        let mut columns: Vec<String> = probe.kind.columns().iter().map(|c| c.to_string()).collect();
        columns.extend(pattern.captures.iter().cloned());
        sink.begin(columns);
        if probe.kind == RedisKind::Zset
            && pattern.glob.is_none()
            && matches!(sink, RowSink::Keys { .. })
        {
            match self.info.addr() {
                redis::ConnectionAddr::Tcp(host, port) => {
                    let (host, port) = (host.clone(), *port);
                    self.zrange_stream(&host, port, probe.pattern.as_bytes(), &mut sink)
                        .await?
                }
                _ => self.zscan(probe.pattern.as_bytes(), &mut sink).await?,
            }
            return Ok(sink);
        }
        for batch in keys.chunks(READ_BATCH) {
            self.read_batch(probe.kind, batch, &mut sink).await?;
        }
        Ok(sink)
    }

    /// Reads one sorted set with one `ZRANGE … WITHSCORES` (one consistent read, as for a
    /// table) on a connection of its own, parsing the reply as it arrives: each member goes
    /// into `sink` without the whole reply ever being held (a million members cost their keys,
    /// not a reply tree beside them). RESP2, after `AUTH` and `SELECT` as the URL asks.
    async fn zrange_stream(
        &self,
        host: &str,
        port: u16,
        key: &[u8],
        sink: &mut RowSink,
    ) -> Result<(), RedisError> {
        let key_text = String::from_utf8_lossy(key).into_owned();
        let down = |what: String| RedisError {
            message: self
                .secret
                .scrub(&format!("reading key `{key_text}`: {what}")),
            source_down: true,
        };
        let settings = self.info.redis_settings();
        let mut request = Vec::new();
        if let Some(pw) = settings.password() {
            match settings.username() {
                Some(user) => {
                    resp_command(&mut request, &[b"AUTH", user.as_bytes(), pw.as_bytes()])
                }
                None => resp_command(&mut request, &[b"AUTH", pw.as_bytes()]),
            }
        }
        let db = settings.db().to_string();
        if settings.db() != 0 {
            resp_command(&mut request, &[b"SELECT", db.as_bytes()]);
        }
        resp_command(&mut request, &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]);
        let read = async {
            let mut stream = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(|e| down(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            stream
                .write_all(&request)
                .await
                .map_err(|e| down(e.to_string()))?;
            let mut r = RespReader::new(stream);
            // AUTH and SELECT answer `+OK`, or an error that is the probe's.
            for _ in 0..(settings.password().is_some() as usize + (settings.db() != 0) as usize) {
                match r.line().await.map_err(|e| down(e.to_string()))? {
                    Line::Simple => {}
                    Line::Error(e) => return Err(self.reply_error(&key_text, &e)),
                    other => return Err(down(format!("unexpected reply {other:?}"))),
                }
            }
            let n = match r.line().await.map_err(|e| down(e.to_string()))? {
                Line::Array(n) => n.max(0) as usize,
                Line::Error(e) => return Err(self.reply_error(&key_text, &e)),
                other => return Err(down(format!("unexpected reply {other:?}"))),
            };
            let mut row = vec![Value::Text(key_text.clone()), Value::Null, Value::Null];
            for _ in 0..n / 2 {
                let member = r.bulk().await.map_err(|e| down(e.to_string()))?;
                row[1] = match member {
                    Some(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
                    None => Value::Null,
                };
                let score = r.bulk().await.map_err(|e| down(e.to_string()))?;
                row[2] = score
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(parse_score)
                    .map(Value::Float)
                    .unwrap_or(Value::Null);
                sink.push_ref(&row);
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(down(format!(
                "timed out (timeout {})",
                invar_core::units::format_duration(self.timeout)
            ))),
        }
    }

    /// A `-ERR …` reply to a read of one key: `WRONGTYPE` names the key and the probe's kind.
    fn reply_error(&self, key_text: &str, e: &str) -> RedisError {
        let what = if e.starts_with("WRONGTYPE") {
            format!(
                "key `{key_text}` is not a {} (WRONGTYPE): a `{}` probe cannot read it",
                type_noun(RedisKind::Zset),
                RedisKind::Zset.as_str()
            )
        } else {
            format!("key `{key_text}`: {e}")
        };
        RedisError {
            message: self.secret.scrub(&what),
            source_down: false,
        }
    }

    /// Walks one sorted set with `ZSCAN … COUNT`, each page's rows into `sink`.
    async fn zscan(&self, key: &[u8], sink: &mut RowSink) -> Result<(), RedisError> {
        let mut conn = self.manager.clone();
        let key_text = String::from_utf8_lossy(key).into_owned();
        let mut row = vec![Value::Text(key_text.clone()), Value::Null, Value::Null];
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, redis::Value) = redis::cmd("ZSCAN")
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(ZSCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.key_error(RedisKind::Zset, &key_text, &e))?;
            for_pairs(page, |member, score| {
                row[1] = into_text_value(member);
                row[2] = score_value(score);
                sink.push_ref(&row);
            });
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(())
    }

    /// The error of a command on one key: a `WRONGTYPE` names the key and the probe's kind;
    /// an I/O error or timeout marks the source down.
    fn key_error(&self, kind: RedisKind, key_text: &str, e: &redis::RedisError) -> RedisError {
        if e.code() == Some("WRONGTYPE") {
            let what = format!(
                "key `{key_text}` is not a {} (WRONGTYPE): a `{}` probe cannot read it",
                type_noun(kind),
                kind.as_str()
            );
            return RedisError {
                message: self.secret.scrub(&what),
                source_down: false,
            };
        }
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            return self.error(&format!("reading key `{key_text}`"), e);
        }
        RedisError {
            message: self
                .secret
                .scrub(&format!("key `{key_text}`: {}", reason(e))),
            source_down: false,
        }
    }

    /// SCANs the keyspace for `glob`, keeping the keys that fit `re` with their captures,
    /// sorted by key. More than `cap` fitting keys is an error.
    async fn scan(
        &self,
        glob: &str,
        re: &regex::Regex,
        captures: &[String],
        cap: u64,
        pattern: &str,
    ) -> Result<Vec<(Vec<u8>, Vec<String>)>, RedisError> {
        let mut conn = self.manager.clone();
        let mut cursor: u64 = 0;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut out = Vec::new();
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(glob)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(&format!("SCAN MATCH `{glob}`"), &e))?;
            for key in batch {
                // SCAN may return a key more than once.
                if !seen.insert(key.clone()) {
                    continue;
                }
                let text = String::from_utf8_lossy(&key);
                let Some(caps) = re.captures(&text) else {
                    continue;
                };
                let values: Vec<String> = captures
                    .iter()
                    .map(|c| {
                        caps.name(c)
                            .map_or(String::new(), |m| m.as_str().to_string())
                    })
                    .collect();
                out.push((key, values));
                if out.len() as u64 > cap {
                    return Err(RedisError {
                        message: format!(
                            "pattern `{pattern}` matches more than max_keys = {cap} keys; \
                             narrow the pattern or raise `max_keys` (on the probe or the source)"
                        ),
                        source_down: false,
                    });
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads a batch of keys in one pipelined round trip and appends their rows.
    async fn read_batch(
        &self,
        kind: RedisKind,
        keys: &[(Vec<u8>, Vec<String>)],
        sink: &mut RowSink,
    ) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (key, _) in keys {
            match kind {
                RedisKind::Zset => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
                RedisKind::Set => pipe.cmd("SMEMBERS").arg(key),
                RedisKind::Hash => pipe.cmd("HGETALL").arg(key),
                RedisKind::String => pipe.cmd("GET").arg(key),
                RedisKind::List => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
                RedisKind::Ttl => pipe.cmd("TTL").arg(key),
            };
        }
        let mut conn = self.manager.clone();
        let replies: Vec<redis::RedisResult<redis::Value>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(&format!("reading {} keys", keys.len()), &e))?;
        if replies.len() != keys.len() {
            return Err(RedisError {
                message: format!(
                    "expected {} replies from the pipeline, got {}",
                    keys.len(),
                    replies.len()
                ),
                source_down: false,
            });
        }
        for ((key, caps), reply) in keys.iter().zip(replies) {
            let key_text = String::from_utf8_lossy(key).into_owned();
            let reply = match reply {
                Ok(v) => v,
                Err(e) => {
                    let what = if e.code() == Some("WRONGTYPE") {
                        format!(
                            "key `{key_text}` is not a {} (WRONGTYPE): a `{}` probe cannot read it",
                            type_noun(kind),
                            kind.as_str()
                        )
                    } else {
                        format!("key `{key_text}`: {}", reason(&e))
                    };
                    return Err(RedisError {
                        message: self.secret.scrub(&what),
                        source_down: false,
                    });
                }
            };
            let key_value = || Value::Text(key_text.clone());
            let mut push = |cells: Vec<Value>| {
                let mut row = cells;
                if !caps.is_empty() {
                    row.extend(caps.iter().map(|c| Value::Text(c.clone())));
                }
                sink.push(row);
            };
            match kind {
                RedisKind::Zset => {
                    // Pair by pair, each member's bytes moved into its cell (no copy, and
                    // no second array of pairs beside the reply).
                    for_pairs(reply, |member, score| {
                        push(vec![
                            key_value(),
                            into_text_value(member),
                            score_value(score),
                        ]);
                    });
                }
                RedisKind::Set => {
                    let mut members: Vec<String> = items(reply).iter().filter_map(text).collect();
                    members.sort();
                    for m in members {
                        push(vec![key_value(), Value::Text(m)]);
                    }
                }
                RedisKind::Hash => {
                    let mut fields: Vec<(String, Value)> = pairs(reply)
                        .into_iter()
                        .map(|(f, v)| (text(&f).unwrap_or_default(), text_value(&v)))
                        .collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    for (f, v) in fields {
                        push(vec![key_value(), Value::Text(f), v]);
                    }
                }
                RedisKind::String => {
                    // A key that vanished since the scan (or a missing literal key): no row.
                    if !matches!(reply, redis::Value::Nil) {
                        push(vec![key_value(), text_value(&reply)]);
                    }
                }
                RedisKind::List => {
                    for (i, v) in items(reply).iter().enumerate() {
                        push(vec![key_value(), Value::Int(i as i64), text_value(v)]);
                    }
                }
                RedisKind::Ttl => {
                    let ttl = match reply {
                        redis::Value::Int(i) => Value::Int(i),
                        other => text(&other)
                            .and_then(|s| s.parse().ok())
                            .map(Value::Int)
                            .unwrap_or(Value::Null),
                    };
                    push(vec![key_value(), ttl]);
                }
            }
        }
        Ok(())
    }

    fn error(&self, doing: &str, e: &redis::RedisError) -> RedisError {
        let down = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal();
        let limit = if e.is_timeout() {
            format!(
                " (timeout {})",
                invar_core::units::format_duration(self.timeout)
            )
        } else {
            String::new()
        };
        RedisError {
            message: self.secret.scrub(&format!("{doing}: {}{limit}", reason(e))),
            source_down: down,
        }
    }
}

/// Probes read at once from one Redis source.
const PROBE_CONCURRENCY: usize = 4;

impl crate::SourceDriver for RedisConn {
    fn concurrency(&self) -> crate::Concurrency {
        crate::Concurrency::PerSource(PROBE_CONCURRENCY)
    }

    fn read(
        self: Arc<Self>,
        probe: &invar_core::Probe,
        sink: RowSink,
        _cx: &crate::ReadCx,
    ) -> futures::future::BoxFuture<'static, Result<crate::sink::Output, crate::ReadError>> {
        let invar_core::Probe::Redis(rp) = probe else {
            return crate::not_mine(probe, "a redis");
        };
        let rp = rp.clone();
        Box::pin(async move {
            match self.read_into(&rp, sink).await {
                Ok(s) => Ok(s.finish_blocking().await?),
                Err(e) => Err(crate::ReadError {
                    message: format!("`{}`: {}", rp.source, e.message),
                    down: e.source_down.then_some(e.message),
                }),
            }
        })
    }

    fn count(&self, name: &str, stats: &mut crate::RunStats) {
        stats.redis_reads.insert(name.to_string(), self.reads());
    }
}

/// Appends one command in RESP (an array of bulk strings).
fn resp_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A RESP2 header line.
#[derive(Debug)]
enum Line {
    Simple,
    Error(String),
    Int,
    Bulk(i64),
    Array(i64),
}

/// Reads RESP2 replies from a stream through one buffer, element by element.
struct RespReader<S> {
    stream: S,
    buf: Vec<u8>,
    start: usize,
}

const RESP_BUFFER: usize = 256 * 1024;

impl<S: tokio::io::AsyncRead + Unpin> RespReader<S> {
    fn new(stream: S) -> Self {
        RespReader {
            stream,
            buf: Vec::with_capacity(RESP_BUFFER),
            start: 0,
        }
    }

    /// Makes at least `n` unread bytes available.
    async fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() - self.start < n {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let need = n.saturating_sub(self.buf.len()).max(RESP_BUFFER / 4);
            if self.buf.capacity() - self.buf.len() < need {
                self.buf.reserve(need);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// The next header line (without its CRLF).
    async fn line(&mut self) -> std::io::Result<Line> {
        let mut scanned = 0;
        let end = loop {
            let unread = &self.buf[self.start..];
            if let Some(i) = unread[scanned..].windows(2).position(|w| w == b"\r\n") {
                break self.start + scanned + i;
            }
            scanned = unread.len().saturating_sub(1);
            self.fill(unread.len() + 1).await?;
        };
        let text = &self.buf[self.start..end];
        self.start = end + 2;
        let (kind, body) = match text.split_first() {
            Some((k, b)) => (*k, b),
            None => (0, text),
        };
        let owned = || String::from_utf8_lossy(body).into_owned();
        let int = || {
            let (neg, digits) = match body.split_first() {
                Some((b'-', d)) => (true, d),
                _ => (false, body),
            };
            let n = digits.iter().try_fold(0i64, |n, &c| {
                c.is_ascii_digit()
                    .then(|| n.checked_mul(10)?.checked_add(i64::from(c - b'0')))
                    .flatten()
            });
            match n {
                Some(n) if !digits.is_empty() => Ok(if neg { -n } else { n }),
                _ => Err(std::io::Error::other(format!(
                    "bad RESP number `{}`",
                    owned()
                ))),
            }
        };
        Ok(match kind {
            b'+' => Line::Simple,
            b'-' => Line::Error(owned()),
            b':' => Line::Int,
            b'$' => Line::Bulk(int()?),
            b'*' => Line::Array(int()?),
            _ => {
                return Err(std::io::Error::other(format!(
                    "unexpected RESP line `{}`",
                    owned()
                )));
            }
        })
    }

    /// The next bulk string (None for a nil), borrowed from the buffer.
    async fn bulk(&mut self) -> std::io::Result<Option<&[u8]>> {
        let len = match self.line().await? {
            Line::Bulk(n) if n < 0 => return Ok(None),
            Line::Bulk(n) => n as usize,
            other => {
                return Err(std::io::Error::other(format!(
                    "expected a bulk string, got {other:?}"
                )));
            }
        };
        self.fill(len + 2).await?;
        let at = self.start;
        self.start += len + 2;
        Ok(Some(&self.buf[at..at + len]))
    }
}

/// A redis error as one line, without the URL. A TLS failure (the server's certificate not
/// trusted, a client certificate refused) says so, with rustls's reason.
fn reason(e: &redis::RedisError) -> String {
    if let Some(tls) = tls_failure(e) {
        let hint = match &tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                " (the server's certificate is not signed by a trusted CA: `tls.ca_file` \
                 must be the CA that signed it; without it, only the webpki roots are trusted)"
            }
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            ) => " (the URL's host is not a name or address in the server's certificate)",
            rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
                | rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::UnknownCA,
            ) => {
                " (the server refused the client certificate, or wants one: \
                 `tls.cert_file` and `tls.key_file`)"
            }
            _ => "",
        };
        return format!("TLS handshake failed: {tls}{hint}").replace('\n', " ");
    }
    e.to_string().replace('\n', " ")
}

/// The rustls error under a redis error, if there is one: the redis crate keeps the I/O
/// error (which wraps rustls's) behind an `Arc`, so each link of the chain is looked through.
fn tls_failure(e: &redis::RedisError) -> Option<rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(t) = rustls_in(err) {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// `err` itself as a rustls error: directly, inside an I/O error, or behind an `Arc`.
fn rustls_in(err: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    if let Some(t) = err.downcast_ref::<rustls::Error>() {
        return Some(t.clone());
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        let inner: &(dyn std::error::Error + 'static) = io.get_ref()?;
        return rustls_in(inner);
    }
    if let Some(arc) = err.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
        let inner: &(dyn std::error::Error + 'static) = arc.as_ref();
        return rustls_in(inner);
    }
    None
}

/// Makes ring the process's rustls crypto provider unless one is installed already: the redis
/// crate builds its `ClientConfig` from the process default, which rustls can only pick by
/// itself while exactly one provider is compiled in.
fn ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread installing one first is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A `tls` file larger than this is not a PEM certificate or key.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The `tls:` block's files, read now (the config checked them when it was loaded; a rotated
/// certificate is read by the next connect). No `ca_file`: the bundled webpki roots.
fn tls_certificates(tls: Option<&RedisTls>) -> Result<redis::TlsCertificates, String> {
    let Some(tls) = tls else {
        return Ok(redis::TlsCertificates {
            client_tls: None,
            root_cert: None,
        });
    };
    let root_cert = match &tls.ca_file {
        Some(p) => Some(read_pem("ca_file", p)?),
        None => None,
    };
    let client_tls = match &tls.client {
        Some(c) => Some(redis::ClientTlsConfig {
            client_cert: read_pem("cert_file", &c.cert_file)?,
            client_key: read_pem("key_file", &c.key_file)?,
        }),
        None => None,
    };
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// One `tls` file's bytes, or an error naming the key and the file (never its contents).
fn read_pem(key: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let fail = |e: std::io::Error| format!("cannot read `tls.{key}` {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(fail)?;
    if !meta.is_file() || meta.len() > MAX_PEM_BYTES {
        return Err(fail(std::io::Error::other(
            "not a regular file of at most 1 MiB",
        )));
    }
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES).read_to_end(&mut out))
        .map_err(fail)?;
    Ok(out)
}

fn type_noun(kind: RedisKind) -> &'static str {
    match kind {
        RedisKind::Zset => "sorted set",
        RedisKind::Set => "set",
        RedisKind::Hash => "hash",
        RedisKind::String => "string",
        RedisKind::List => "list",
        RedisKind::Ttl => "key",
    }
}

fn parse_score(s: &str) -> Option<f64> {
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// The elements of an array, set or push reply.
fn items(v: redis::Value) -> Vec<redis::Value> {
    match v {
        redis::Value::Array(a) | redis::Value::Set(a) => a,
        redis::Value::Nil => Vec::new(),
        other => vec![other],
    }
}

/// Pairs from a flat `[a, b, a, b]` array (RESP2), an array of pairs or a map (RESP3).
fn pairs(v: redis::Value) -> Vec<(redis::Value, redis::Value)> {
    match v {
        redis::Value::Map(m) => m,
        other => {
            let flat = items(other);
            if flat
                .iter()
                .all(|x| matches!(x, redis::Value::Array(a) if a.len() == 2))
            {
                flat.into_iter()
                    .filter_map(|x| match x {
                        redis::Value::Array(mut a) => {
                            let b = a.pop()?;
                            let a = a.pop()?;
                            Some((a, b))
                        }
                        _ => None,
                    })
                    .collect()
            } else {
                let mut out = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(a), Some(b)) = (it.next(), it.next()) {
                    out.push((a, b));
                }
                out
            }
        }
    }
}

/// Calls `f` on each pair of a flat `[a, b, a, b]` array (RESP2), an array of pairs or a map
/// (RESP3), consuming the reply.
fn for_pairs(v: redis::Value, mut f: impl FnMut(redis::Value, redis::Value)) {
    match v {
        redis::Value::Map(m) => m.into_iter().for_each(|(a, b)| f(a, b)),
        other => {
            let flat = items(other);
            if flat
                .iter()
                .all(|x| matches!(x, redis::Value::Array(a) if a.len() == 2))
            {
                for x in flat {
                    if let redis::Value::Array(mut a) = x
                        && let (Some(b), Some(a)) = (a.pop(), a.pop())
                    {
                        f(a, b);
                    }
                }
            } else {
                let mut it = flat.into_iter();
                while let (Some(a), Some(b)) = (it.next(), it.next()) {
                    f(a, b);
                }
            }
        }
    }
}

/// A zset score: a float (`inf` too), or NULL when it is not a number.
fn score_value(v: redis::Value) -> Value {
    match v {
        redis::Value::Double(d) => Value::Float(d),
        other => text(&other)
            .and_then(|s| parse_score(&s))
            .map(Value::Float)
            .unwrap_or(Value::Null),
    }
}

/// [`text_value`], moving a bulk string's bytes into the text when they are UTF-8.
fn into_text_value(v: redis::Value) -> Value {
    match v {
        redis::Value::BulkString(b) => match String::from_utf8(b) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Text(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
        other => text_value(&other),
    }
}

/// A reply's text, exactly as stored (lossy for bytes that are not UTF-8).
fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        redis::Value::Double(d) => Some(d.to_string()),
        redis::Value::Boolean(b) => Some(b.to_string()),
        redis::Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn text_value(v: &redis::Value) -> Value {
    text(v).map(Value::Text).unwrap_or(Value::Null)
}
