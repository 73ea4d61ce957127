//! A lean, blocking client of the core NATS text protocol, for core-mode
//! routes (<https://docs.nats.io/reference/reference-protocols/nats-protocol>).
//!
//! Why not async-nats on this path: per message it builds and drops a
//! header map, parses header names, grows buffers and hands the message
//! between tokio tasks; that cost, not the bridge's, held the route to
//! about a third of a bare publisher's throughput (README, "Tests and
//! benchmark"). Here a route's own thread owns one `TcpStream`; outgoing
//! frames are formatted straight into one buffer and written with one
//! `write_all` per batch, and incoming frames are parsed in place from one
//! read buffer. Nothing is allocated per message.
//!
//! The read side is untrusted input: every length is checked against the
//! server's `max_payload` (or [`MAX_CONTROL`] for a control line) before
//! anything waits for or allocates it, and a malformed frame is an error,
//! never a panic.
//!
//! Only plain TCP to one server is spoken ([`Plain::parse`]); anything else
//! (TLS, several servers) stays with async-nats.

use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

/// Longest control line accepted (`INFO` with a cluster's URLs is the long one).
pub const MAX_CONTROL: usize = 64 * 1024;
/// Connecting, the handshake, and any one write give up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Outgoing bytes are written once this many are gathered (and at a batch's end).
pub const WRITE_CHUNK: usize = 64 * 1024;

/// A server URL this client speaks to: `nats://[user:pass@|token@]host[:port]`
/// or `host:port`, one server, no TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain {
    /// `host:port`, as `ToSocketAddrs` takes it.
    pub addr: String,
    /// Credentials from the URL.
    pub auth: Auth,
}

/// Credentials carried by the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// None.
    None,
    /// `user:pass@`.
    UserPass(String, String),
    /// `token@`.
    Token(String),
}

impl Plain {
    /// The URL when this client can speak to it; `None` means "use async-nats"
    /// (another scheme such as `tls://`, or several comma-separated servers).
    pub fn parse(server: &str) -> Option<Plain> {
        let s = server.trim();
        if s.is_empty() || s.contains(',') {
            return None;
        }
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("nats") => rest,
            Some(_) => return None,
            None => s,
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains(['/', '?', '#']) {
            return None;
        }
        // Credentials are percent-encoded in a URL (a password with `@`
        // or `:` in it); a malformed escape leaves the URL to async-nats,
        // which reports it.
        let (auth, hostport) = match rest.rsplit_once('@') {
            None => (Auth::None, rest),
            Some((cred, hp)) => match cred.split_once(':') {
                Some((u, p)) => (Auth::UserPass(percent_decode(u)?, percent_decode(p)?), hp),
                None => (Auth::Token(percent_decode(cred)?), hp),
            },
        };
        // `[v6]:port`, `host:port`, or a host alone (port 4222).
        let addr = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                if h.contains(':') && !h.starts_with('[') {
                    return None;
                }
                hostport.to_owned()
            }
            Some(_) if hostport.starts_with('[') && hostport.ends_with(']') => {
                format!("{hostport}:4222")
            }
            Some(_) => return None,
            None if !hostport.is_empty() => format!("{hostport}:4222"),
            None => return None,
        };
        Some(Plain { addr, auth })
    }
}

/// `%XX` escapes decoded (RFC 3986); `None` for a bad escape or bytes that
/// are not UTF-8 once decoded.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One frame from the server. Ranges index the connection's read buffer
/// ([`Conn::bytes`]) and stay valid until the next read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `MSG` (no headers) or `HMSG`: the header block (from `NATS/1.0`
    /// through the blank line) and the payload.
    Msg {
        headers: Option<Range<usize>>,
        payload: Range<usize>,
    },
    /// `PING`: answer `PONG`.
    Ping,
    /// `PONG`: the server processed everything sent before our `PING`.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR '...'`: the text.
    Err(Range<usize>),
    /// `INFO {json}`: the JSON.
    Info(Range<usize>),
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A decimal length field: digits only, no overflow.
fn number(field: &[u8]) -> io::Result<usize> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return Err(bad(format!(
            "bad number {:?} in a frame",
            String::from_utf8_lossy(field)
        )));
    }
    Ok(field
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

/// Parses the first frame of `buf` (offsets are relative to `buf`, shifted
/// by `base`): `Ok(None)` when it is not complete yet, else the frame and
/// how many bytes it took. A frame longer than `max_payload` (body) or
/// [`MAX_CONTROL`] (control line) is an error before it is complete.
pub fn parse(buf: &[u8], base: usize, max_payload: usize) -> io::Result<Option<(Frame, usize)>> {
    // The line ends at the first LF, which must follow a CR.
    let Some(lf) = buf.iter().position(|&c| c == b'\n') else {
        if buf.len() > MAX_CONTROL {
            return Err(bad("control line too long"));
        }
        return Ok(None);
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(bad("control line not ended by CRLF"));
    }
    let eol = lf - 1;
    if eol > MAX_CONTROL {
        return Err(bad("control line too long"));
    }
    let line = &buf[..eol];
    let after = eol + 2;
    let (op, args) = match line.iter().position(|&c| c == b' ' || c == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[..0]),
    };
    let simple = |f: Frame| Ok(Some((f, after)));
    let rel = |r: &[u8]| {
        // `r` is a sub-slice of `buf`: its offset from `buf`'s start.
        let start = r.as_ptr() as usize - buf.as_ptr() as usize;
        base + start..base + start + r.len()
    };
    if op.eq_ignore_ascii_case(b"PING") {
        return simple(Frame::Ping);
    }
    if op.eq_ignore_ascii_case(b"PONG") {
        return simple(Frame::Pong);
    }
    if op.eq_ignore_ascii_case(b"+OK") {
        return simple(Frame::Ok);
    }
    if op.eq_ignore_ascii_case(b"-ERR") {
        return simple(Frame::Err(rel(args)));
    }
    if op.eq_ignore_ascii_case(b"INFO") {
        return simple(Frame::Info(rel(args)));
    }
    let hmsg = op.eq_ignore_ascii_case(b"HMSG");
    if !hmsg && !op.eq_ignore_ascii_case(b"MSG") {
        return Err(bad(format!(
            "unknown operation {:?}",
            String::from_utf8_lossy(&line[..line.len().min(32)])
        )));
    }
    let mut fields = [&args[..0]; 5];
    let mut n = 0;
    for f in args
        .split(|&c| c == b' ' || c == b'\t')
        .filter(|f| !f.is_empty())
    {
        if n == fields.len() {
            return Err(bad("too many fields in MSG/HMSG"));
        }
        fields[n] = f;
        n += 1;
    }
    // MSG subject sid [reply] total; HMSG subject sid [reply] hdr total.
    let lens = if hmsg { 2 } else { 1 };
    if n != 2 + lens && n != 3 + lens {
        return Err(bad("wrong number of fields in MSG/HMSG"));
    }
    let total = number(fields[n - 1])?;
    let hdr = if hmsg { number(fields[n - 2])? } else { 0 };
    if total > max_payload {
        return Err(bad(format!(
            "a message of {total} bytes exceeds max_payload {max_payload}"
        )));
    }
    if hdr > total {
        return Err(bad("header length above the total length"));
    }
    let end = after + total;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(bad("message not followed by CRLF"));
    }
    let headers = if hmsg {
        let h = &buf[after..after + hdr];
        if !h.starts_with(b"NATS/") || !h.ends_with(b"\r\n\r\n") {
            return Err(bad("malformed header block"));
        }
        Some(rel(h))
    } else {
        None
    };
    let payload = rel(&buf[after + hdr..end]);
    Ok(Some((Frame::Msg { headers, payload }, end + 2)))
}

/// The value of header `name` (case-insensitive) in a header block, the
/// first if several; `None` when absent or not UTF-8.
pub fn header<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    // Skip the version line (`NATS/1.0`, maybe with a status).
    let mut lines = block.split(|&c| c == b'\n').skip(1);
    lines.find_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let colon = l.iter().position(|&c| c == b':')?;
        if !l[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        std::str::from_utf8(&l[colon + 1..]).ok().map(str::trim)
    })
}

/// Appends `n` in decimal (no allocation).
pub fn put_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// How many decimal digits `n` has.
pub fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The header block's first line.
const VERSION: &[u8] = b"NATS/1.0\r\n";
/// Every out route message's id header: `host/segment/seq`.
const ID: &[u8] = b"Nats-Msg-Id: ";
/// A queue's messages' kind header.
const KIND: &[u8] = b"Shmq-Kind: ";

/// The bytes of the header block up to and with `Nats-Msg-Id: <prefix><seq>\r\n`.
fn id_len(prefix: &str, seq: u64) -> usize {
    VERSION.len() + ID.len() + prefix.len() + digits(seq) + 2
}

/// Appends `HPUB <subject> <hdr> <hdr + body>\r\n`, the version line and
/// `Nats-Msg-Id: <prefix><seq>\r\n`: what every message of a route starts
/// with; the caller appends the rest of the header block and the payload.
fn put_hpub_start(
    buf: &mut Vec<u8>,
    subject: &str,
    hdr: usize,
    body: usize,
    prefix: &str,
    seq: u64,
) {
    buf.extend_from_slice(b"HPUB ");
    buf.extend_from_slice(subject.as_bytes());
    buf.push(b' ');
    put_u64(buf, hdr as u64);
    buf.push(b' ');
    put_u64(buf, (hdr + body) as u64);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(VERSION);
    buf.extend_from_slice(ID);
    buf.extend_from_slice(prefix.as_bytes());
    put_u64(buf, seq);
    buf.extend_from_slice(b"\r\n");
}

/// Appends `HPUB subject hdr total\r\nNATS/1.0\r\nNats-Msg-Id: <prefix><seq>\r\n
/// [Shmq-Kind: <kind>\r\n]\r\n<payload>\r\n`: the headers an out route's
/// message carries (see `out::Headers`).
pub fn put_hpub(
    buf: &mut Vec<u8>,
    subject: &str,
    prefix: &str,
    seq: u64,
    kind: Option<&str>,
    payload: &[u8],
) {
    let hdr = hpub_header_len(prefix, seq, kind);
    put_hpub_start(buf, subject, hdr, payload.len(), prefix, seq);
    if let Some(k) = kind {
        buf.extend_from_slice(KIND);
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(payload);
    buf.extend_from_slice(b"\r\n");
}

/// Appends one `HPUB` of a pack ([`crate::pack`]): the messages
/// `payloads`, of consecutive sequence numbers from `first`, in one NATS
/// message whose `Nats-Msg-Id` names the first and `Shmq-Pack` the count.
pub fn put_hpack<'a>(
    buf: &mut Vec<u8>,
    subject: &str,
    prefix: &str,
    first: u64,
    payloads: impl Iterator<Item = &'a [u8]> + Clone,
) {
    let n = payloads.clone().count();
    let hdr = hpack_header_len(prefix, first, n);
    let body = crate::pack::body_len(payloads.clone());
    put_hpub_start(buf, subject, hdr, body, prefix, first);
    buf.extend_from_slice(crate::pack::PACK_HEADER.as_bytes());
    buf.extend_from_slice(b": ");
    put_u64(buf, n as u64);
    buf.extend_from_slice(b"\r\n\r\n");
    crate::pack::put_body(buf, payloads);
    buf.extend_from_slice(b"\r\n");
}

/// The header block size of [`put_hpack`] for a pack of `n`.
pub fn hpack_header_len(prefix: &str, first: u64, n: usize) -> usize {
    id_len(prefix, first) + crate::pack::PACK_HEADER.len() + 2 + digits(n as u64) + 2 + 2
}

/// The header block size of [`put_hpub`] (for the `max_payload` check).
pub fn hpub_header_len(prefix: &str, seq: u64, kind: Option<&str>) -> usize {
    id_len(prefix, seq) + kind.map_or(0, |k| KIND.len() + k.len() + 2) + 2
}

/// The fields of the server's `INFO` this client looks at.
#[derive(Deserialize, Debug, Default)]
struct Info {
    #[serde(default)]
    headers: bool,
    #[serde(default)]
    max_payload: usize,
    #[serde(default)]
    tls_required: bool,
}

/// What [`Conn::connect`] found.
pub enum Connected {
    /// A confirmed connection (`PONG` received).
    Conn(Conn),
    /// The server requires TLS: use async-nats.
    TlsRequired,
}

/// [`Conn::connect`], where TLS is an error (a reconnection: the route
/// chose this client when the server did not require TLS).
pub fn reconnect(url: &Plain) -> Result<Conn> {
    match Conn::connect(url)? {
        Connected::Conn(c) => Ok(c),
        Connected::TlsRequired => bail!("the server now requires TLS: restart the bridge"),
    }
}

/// One connection to the server.
pub struct Conn {
    sock: TcpStream,
    /// Received bytes; `start..end` not parsed yet.
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Outgoing frames gathered for one `write_all`.
    pub wbuf: Vec<u8>,
    /// The server's largest message (headers and payload).
    pub max_payload: usize,
    /// The socket is in nonblocking mode (a zero-wait read left it so).
    nonblocking: bool,
    /// The socket's read timeout (while blocking).
    rcvtimeo: Duration,
}

impl Conn {
    /// Connects, reads `INFO`, sends `CONNECT` and `PING`, and waits for
    /// the `PONG` (a refused login comes as `-ERR` before it).
    pub fn connect(url: &Plain) -> Result<Connected> {
        let mut last = None;
        let addrs = url
            .addr
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", url.addr))?;
        let mut sock = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(sock) = sock else {
            return Err(last.map_or_else(
                || anyhow::anyhow!("{} resolves to no address", url.addr),
                anyhow::Error::from,
            ))
            .with_context(|| format!("connecting to {}", url.addr));
        };
        // Small frames go out at once: the batching is ours.
        sock.set_nodelay(true)?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut c = Conn {
            sock,
            rbuf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            wbuf: Vec::with_capacity(WRITE_CHUNK + 4096),
            // Until INFO says otherwise, only control lines are expected.
            max_payload: 0,
            nonblocking: false,
            rcvtimeo: IO_TIMEOUT,
        };
        let info = match c.next(IO_TIMEOUT)? {
            Some(Frame::Info(r)) => serde_json::from_slice::<Info>(c.bytes(r))
                .context("the server's INFO is not valid JSON")?,
            Some(f) => bail!("the server sent {f:?} before INFO"),
            None => bail!("no INFO from the server within {IO_TIMEOUT:?}"),
        };
        if info.tls_required {
            return Ok(Connected::TlsRequired);
        }
        if !info.headers {
            bail!("the server does not support headers (nats-server 2.2 or later needed)");
        }
        c.max_payload = info.max_payload.max(1);
        let mut connect = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "headers": true,
            "no_responders": false,
            "name": "shmq-bridge",
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1,
        });
        match &url.auth {
            Auth::None => {}
            Auth::UserPass(u, p) => {
                connect["user"] = u.as_str().into();
                connect["pass"] = p.as_str().into();
            }
            Auth::Token(t) => connect["auth_token"] = t.as_str().into(),
        }
        c.wbuf.extend_from_slice(b"CONNECT ");
        c.wbuf.extend_from_slice(connect.to_string().as_bytes());
        c.wbuf.extend_from_slice(b"\r\nPING\r\n");
        c.flush()?;
        loop {
            match c.next(IO_TIMEOUT)? {
                Some(Frame::Pong) => return Ok(Connected::Conn(c)),
                Some(Frame::Err(r)) => bail!(
                    "the server refused the connection: {}",
                    String::from_utf8_lossy(c.bytes(r))
                ),
                Some(Frame::Ping) => c.wbuf.extend_from_slice(b"PONG\r\n"),
                Some(_) => {}
                None => bail!("no PONG from the server within {IO_TIMEOUT:?}"),
            }
        }
    }

    /// The bytes of a range a [`Frame`] holds.
    pub fn bytes(&self, r: Range<usize>) -> &[u8] {
        &self.rbuf[r]
    }

    /// Writes everything gathered in [`Conn::wbuf`].
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.blocking()?;
            let r = self.sock.write_all(&self.wbuf);
            self.wbuf.clear();
            r?;
        }
        Ok(())
    }

    /// The next frame already received, without reading.
    pub fn next_buffered(&mut self) -> io::Result<Option<Frame>> {
        let parsed = parse(
            &self.rbuf[self.start..self.end],
            self.start,
            self.max_payload,
        )?;
        Ok(parsed.map(|(f, n)| {
            self.start += n;
            f
        }))
    }

    /// The next frame, reading for up to about `wait` (zero: only what the
    /// socket holds now). `Ok(None)`: none complete in that time. The
    /// connection's end is an error.
    pub fn next(&mut self, wait: Duration) -> io::Result<Option<Frame>> {
        let mut reads = 0;
        loop {
            if let Some(f) = self.next_buffered()? {
                return Ok(Some(f));
            }
            // One read with the timeout (a read returns as soon as bytes
            // come), then more only while a frame is arriving.
            if reads > 0 && self.start == self.end {
                return Ok(None);
            }
            if reads > 8 && wait.is_zero() {
                return Ok(None);
            }
            reads += 1;
            self.make_room();
            // Socket options change only when the kind of wait does.
            if wait.is_zero() {
                if !self.nonblocking {
                    self.sock.set_nonblocking(true)?;
                    self.nonblocking = true;
                }
            } else {
                self.blocking()?;
                if self.rcvtimeo != wait {
                    self.sock.set_read_timeout(Some(wait))?;
                    self.rcvtimeo = wait;
                }
            }
            match self.sock.read(&mut self.rbuf[self.end..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(n) => self.end += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the unparsed bytes to the front and, when a frame needs more
    /// room than the buffer has, grows it: at most to a control line plus
    /// `max_payload` (the parser refuses longer frames before this).
    fn make_room(&mut self) {
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.rbuf.len() {
            let limit = MAX_CONTROL + self.max_payload + 4;
            let len = (self.rbuf.len() * 2).min(limit).max(self.rbuf.len() + 1);
            self.rbuf.resize(len, 0);
        }
    }

    /// Puts back a socket left nonblocking by a zero-wait read: writes
    /// block (up to the write timeout) rather than write half a frame.
    fn blocking(&mut self) -> io::Result<()> {
        if self.nonblocking {
            self.sock.set_nonblocking(false)?;
            self.nonblocking = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames(stream: &[u8], max: usize) -> io::Result<Vec<(Frame, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((f, n)) = parse(&stream[at..], at, max)? {
            let bytes = match &f {
                Frame::Msg { payload, .. } => stream[payload.clone()].to_vec(),
                Frame::Err(r) | Frame::Info(r) => stream[r.clone()].to_vec(),
                _ => Vec::new(),
            };
            out.push((f, bytes));
            at += n;
        }
        assert_eq!(at, stream.len(), "bytes left unparsed");
        Ok(out)
    }

    const STREAM: &[u8] = b"INFO {\"max_payload\":1024}\r\n\
        MSG a.b 1 5\r\nhello\r\n\
        PING\r\n\
        HMSG a.b 1 reply.x 32 37\r\nNATS/1.0\r\nNats-Msg-Id: h/s/7\r\n\r\nworld\r\n\
        +OK\r\n\
        MSG a.b 1 0\r\n\r\n\
        -ERR 'Stale Connection'\r\n\
        PONG\r\n";

    #[test]
    fn parses_every_frame_kind() {
        let f = all_frames(STREAM, 1024).unwrap();
        let kinds: Vec<_> = f
            .iter()
            .map(|(f, b)| match f {
                Frame::Msg { headers, .. } => format!(
                    "msg{} {}",
                    if headers.is_some() { "+h" } else { "" },
                    String::from_utf8_lossy(b)
                ),
                other => format!("{other:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap()
                    .to_owned(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Info",
                "msg hello",
                "Ping",
                "msg+h world",
                "Ok",
                "msg ",
                "Err",
                "Pong"
            ]
        );
        let Frame::Msg {
            headers: Some(h), ..
        } = &f[3].0
        else {
            panic!()
        };
        assert_eq!(header(&STREAM[h.clone()], "nats-msg-id"), Some("h/s/7"));
        assert_eq!(header(&STREAM[h.clone()], "Shmq-Kind"), None);
        assert_eq!(f[6].1, b"'Stale Connection'");
    }

    /// Split at every offset, fed as a reader would (append, parse what is
    /// complete, keep the rest): the same frames, never an error.
    #[test]
    fn frames_split_at_every_byte() {
        let whole = all_frames(STREAM, 1024).unwrap();
        for cut in 0..=STREAM.len() {
            let mut buf = Vec::new();
            let mut start = 0;
            let mut got = Vec::new();
            for piece in [&STREAM[..cut], &STREAM[cut..]] {
                buf.extend_from_slice(piece);
                while let Some((f, n)) = parse(&buf[start..], start, 1024).unwrap() {
                    got.push(f);
                    start += n;
                }
            }
            assert_eq!(start, buf.len(), "cut at {cut}");
            let want: Vec<_> = whole.iter().map(|(f, _)| f.clone()).collect();
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn malformed_or_oversized_frames_are_errors() {
        let bad_frames: &[&[u8]] = &[
            b"MSG a 1 2000\r\n",                 // above max_payload, before it arrives
            b"MSG a 1 99999999999999999999\r\n", // overflow
            b"MSG a 1 -1\r\n",                   // not a number
            b"MSG a 1\r\n",                      // too few fields
            b"MSG a 1 b c d e 2\r\n",            // too many
            b"MSG a 1 3\r\nabcX\n",              // no CRLF after the payload
            b"HMSG a 1 9 5\r\n",                 // header longer than the total
            b"HMSG a 1 5 5\r\nhello\r\n",        // not a header block
            b"HMSG a 1 12 12\r\nNATS/1.0\r\nX\r\n\r\n", // no blank line ending it
            b"FOO bar\r\n",
        ];
        for f in bad_frames {
            assert!(
                parse(f, 0, 1024).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(f)
            );
        }
        // A control line that never ends is refused once past the bound.
        let long = vec![b'x'; MAX_CONTROL + 1];
        assert!(parse(&long, 0, 1024).is_err());
        assert!(parse(&long[..MAX_CONTROL], 0, 1024).unwrap().is_none());
    }

    #[test]
    fn hpub_bytes_are_the_protocols() {
        let mut b = Vec::new();
        put_hpub(&mut b, "feed.q", "h/posix:q/", 42, None, b"abc");
        let want = b"HPUB feed.q 39 42\r\nNATS/1.0\r\nNats-Msg-Id: h/posix:q/42\r\n\r\nabc\r\n";
        assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(want));
        assert_eq!(hpub_header_len("h/posix:q/", 42, None), 39);
        b.clear();
        put_hpub(&mut b, "s", "p/", 0, Some("queue"), b"");
        let want = b"HPUB s 48 48\r\nNATS/1.0\r\nNats-Msg-Id: p/0\r\nShmq-Kind: queue\r\n\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(want));
        assert_eq!(hpub_header_len("p/", 0, Some("queue")), 48);
        // What this writes, this parser reads back (as the server relays it).
        let relayed = String::from_utf8_lossy(&b).replacen("HPUB s", "HMSG s 1", 1);
        let (f, _) = parse(relayed.as_bytes(), 0, 1024).unwrap().unwrap();
        let Frame::Msg {
            headers: Some(h), ..
        } = f
        else {
            panic!()
        };
        let h = &relayed.as_bytes()[h];
        assert_eq!(header(h, "Nats-Msg-Id"), Some("p/0"));
        assert_eq!(header(h, "Shmq-Kind"), Some("queue"));
    }

    #[test]
    fn hpack_bytes_are_the_protocols() {
        let mut b = Vec::new();
        let msgs: [&[u8]; 2] = [b"ab", b"c"];
        put_hpack(&mut b, "s", "p/", 7, msgs.iter().copied());
        let want = b"HPUB s 44 55\r\nNATS/1.0\r\nNats-Msg-Id: p/7\r\nShmq-Pack: 2\r\n\r\n\
                     \x02\0\0\0ab\x01\0\0\0c\r\n";
        assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(want));
        assert_eq!(hpack_header_len("p/", 7, 2), 44);
        // Relayed as the server does, it reads back as the pack it was.
        let relayed = [&b"HMSG s 1"[..], &b[6..]].concat();
        let (f, _) = parse(&relayed, 0, 1024).unwrap().unwrap();
        let Frame::Msg {
            headers: Some(h),
            payload,
        } = f
        else {
            panic!()
        };
        let h = &relayed[h];
        assert_eq!(header(h, "Nats-Msg-Id"), Some("p/7"));
        let n = crate::pack::count(header(h, crate::pack::PACK_HEADER).unwrap()).unwrap();
        let body = &relayed[payload];
        let parts: Vec<&[u8]> = crate::pack::split(body, n)
            .unwrap()
            .into_iter()
            .map(|r| &body[r])
            .collect();
        assert_eq!(parts, msgs);
    }

    /// Mutated frames (bytes flipped, cut, inserted) from a fixed seed:
    /// the parser, the header lookup and the pack splitter never panic,
    /// and whatever they accept lies inside the buffer.
    #[test]
    fn mutated_frames_never_panic() {
        let mut good = Vec::new();
        put_hpack(
            &mut good,
            "s",
            "h/posix:a/",
            7,
            [&b"ab"[..], b"cde"].into_iter(),
        );
        let good = [&b"HMSG s 1"[..], &good[6..]].concat();
        let seeds: [&[u8]; 4] = [
            &good,
            b"MSG s 1 3\r\nabc\r\nPING\r\n",
            b"INFO {\"max_payload\":1048576}\r\n",
            b"HMSG s 1 r 22 25\r\nNATS/1.0\r\nA: b\r\n\r\nxyz\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        let mut accepted = [0usize; 3];
        for i in 0..20_000 {
            let mut b = seeds[i % seeds.len()].to_vec();
            for _ in 0..1 + rnd(4) {
                match rnd(3) {
                    0 if !b.is_empty() => {
                        let at = rnd(b.len());
                        b[at] = rnd(256) as u8;
                    }
                    0 => {}
                    1 => b.truncate(rnd(b.len() + 1)),
                    _ => {
                        let at = rnd(b.len() + 1);
                        b.insert(at, [b'\r', b'\n', b' ', b'9', 0][rnd(5)]);
                    }
                }
            }
            if let Ok(Some((f, used))) = parse(&b, 0, 1024) {
                accepted[0] += 1;
                assert!(used <= b.len());
                if let Frame::Msg { headers, payload } = f {
                    assert!(payload.end <= b.len());
                    if let Some(h) = headers {
                        assert!(h.end <= payload.start);
                        let block = &b[h];
                        if let Some(n) =
                            header(block, crate::pack::PACK_HEADER).and_then(crate::pack::count)
                        {
                            let body = &b[payload];
                            accepted[1] += 1;
                            if let Ok(parts) = crate::pack::split(body, n) {
                                accepted[2] += 1;
                                assert!(parts.iter().all(|r| r.end <= body.len()));
                            }
                        }
                    }
                }
            }
        }
        // The mutations reach every layer (else this would check little):
        // frames parsed, packs counted, packs split.
        assert!(accepted.iter().all(|&n| n > 100), "{accepted:?}");
    }

    #[test]
    fn numbers_without_allocation() {
        for n in [0, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut b = Vec::new();
            put_u64(&mut b, n);
            assert_eq!(b, n.to_string().as_bytes());
            assert_eq!(digits(n), n.to_string().len());
        }
    }

    #[test]
    fn which_urls_are_plain() {
        let p = |s| Plain::parse(s).map(|p| (p.addr, p.auth));
        assert_eq!(
            p("nats://127.0.0.1:4222"),
            Some(("127.0.0.1:4222".into(), Auth::None))
        );
        assert_eq!(p("localhost"), Some(("localhost:4222".into(), Auth::None)));
        assert_eq!(
            p("nats://u:p@h:5"),
            Some(("h:5".into(), Auth::UserPass("u".into(), "p".into())))
        );
        assert_eq!(
            p("nats://tok@h:5"),
            Some(("h:5".into(), Auth::Token("tok".into())))
        );
        assert_eq!(p("[::1]:4223"), Some(("[::1]:4223".into(), Auth::None)));
        assert_eq!(p("tls://h:4222"), None);
        assert_eq!(p("nats://a:4222,nats://b:4222"), None);
        assert_eq!(p("nats://h:notaport"), None);
        // Percent-encoded credentials, as async-nats takes them.
        assert_eq!(
            p("nats://us%40r:p%3A%2Fw@h:5"),
            Some(("h:5".into(), Auth::UserPass("us@r".into(), "p:/w".into())))
        );
        assert_eq!(
            p("nats://t%25k@h:5"),
            Some(("h:5".into(), Auth::Token("t%k".into())))
        );
        assert_eq!(p("nats://u:%zz@h:5"), None);
        assert_eq!(p("nats://u:%4@h:5"), None);
    }
}
