//! The proxy's side of the wire: buffered connections, heads read and framed by
//! [`datacube_protocol::http1`], bodies held or streamed, hop-by-hop headers left on their hop.

use bytes::{Buf, BytesMut};
use datacube_protocol::http1::{self, ChunkScan, Framing, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection's buffered reader.
pub(super) struct Side {
    pub(super) stream: TcpStream,
    pub(super) buf: BytesMut,
}

impl Side {
    pub(super) fn new(stream: TcpStream) -> Side {
        Side {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// Reads more; `Ok(0)` at the end of the connection.
    pub(super) async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(4096);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads the whole body of `framing` into memory (its raw bytes, framing included), when
    /// it is at most `limit` long; `None` when it is longer.
    pub(super) async fn read_body(
        &mut self,
        framing: Framing,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, ProxyError> {
        match framing {
            Framing::None => Ok(Some(Vec::new())),
            Framing::Length(n) => {
                let Some(n) = usize::try_from(n).ok().filter(|n| *n <= limit) else {
                    return Ok(None);
                };
                while self.buf.len() < n {
                    if self.fill().await? == 0 {
                        return Err(ProxyError::Closed);
                    }
                }
                Ok(Some(self.buf.split_to(n).to_vec()))
            }
            Framing::Chunked => {
                let mut at = 0;
                loop {
                    match http1::chunked_end(&self.buf[..], at) {
                        ChunkScan::Done(end) => return Ok(Some(self.buf.split_to(end).to_vec())),
                        ChunkScan::More(next) => at = next,
                        ChunkScan::Bad(why) => return Err(ProxyError::Malformed(why)),
                    }
                    if self.buf.len() > limit {
                        return Err(ProxyError::TooLarge);
                    }
                    if self.fill().await? == 0 {
                        return Err(ProxyError::Closed);
                    }
                }
            }
            Framing::Close => {
                while self.fill().await? > 0 {
                    if self.buf.len() > limit {
                        return Ok(None);
                    }
                }
                Ok(Some(self.buf.split().to_vec()))
            }
        }
    }
}

/// Why a message could not be read or passed on.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProxyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed mid-message")]
    Closed,
    #[error("{0}")]
    Malformed(&'static str),
    #[error("too large")]
    TooLarge,
}

/// A parsed head: the bytes to send on (hop-by-hop headers left out), and its framing.
pub(super) struct Head {
    pub(super) bytes: Vec<u8>,
    pub(super) framed: http1::Framed,
}

/// A request's head, parsed: the target and the method matter besides the framing.
pub(super) struct RequestHead {
    pub(super) head: Head,
    pub(super) method: String,
    pub(super) target: String,
}

/// Writes the head lines of `raw` (a complete head) without the hop-by-hop headers.
fn strip_head(raw: &[u8], out: &mut Vec<u8>) {
    let mut lines = raw.split_inclusive(|b| *b == b'\n');
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
    }
    for line in lines {
        let name = line.split(|b| *b == b':').next().unwrap_or(b"");
        let name = std::str::from_utf8(name).unwrap_or("").trim();
        if line != b"\r\n" && http1::hop_by_hop(name) {
            continue;
        }
        out.extend_from_slice(line);
    }
}

/// Reads a request's head (at most `max_head` bytes); `None` when the connection ends
/// before one starts.
pub(super) async fn read_request_head(
    client: &mut Side,
    prefix: &str,
    max_head: usize,
) -> Result<Option<RequestHead>, ProxyError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&client.buf) {
            Ok(httparse::Status::Complete(len)) => {
                let method = req.method.unwrap_or("GET").to_owned();
                let target = req.path.unwrap_or("/").to_owned();
                let http10 = req.version == Some(0);
                let framed = http1::framing(req.headers, http10, Message::Request)
                    .map_err(|e| ProxyError::Malformed(e.0))?;
                let raw = client.buf.split_to(len);
                let mut bytes = Vec::with_capacity(len + prefix.len());
                if prefix.is_empty() {
                    strip_head(&raw, &mut bytes);
                } else {
                    // The upstream's path prefix goes before the target.
                    let first_line_end = raw.iter().position(|b| *b == b'\n').unwrap_or(0);
                    let line = String::from_utf8_lossy(&raw[..first_line_end]);
                    let line =
                        line.replacen(&format!(" {target} "), &format!(" {prefix}{target} "), 1);
                    bytes.extend_from_slice(line.as_bytes());
                    let mut rest = Vec::new();
                    strip_head(&raw[first_line_end..], &mut rest);
                    bytes.extend_from_slice(&rest);
                }
                return Ok(Some(RequestHead {
                    head: Head { bytes, framed },
                    method,
                    target,
                }));
            }
            Ok(httparse::Status::Partial) => {
                if client.buf.len() > max_head {
                    return Err(ProxyError::TooLarge);
                }
                if client.fill().await? == 0 {
                    return if client.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(ProxyError::Closed)
                    };
                }
            }
            Err(_) => return Err(ProxyError::Malformed("not an HTTP/1.1 request")),
        }
    }
}

/// Reads an answer's head, skipping interim (1xx) answers: status and head.
pub(super) async fn read_response_head(
    up: &mut Side,
    to_head: bool,
    max_head: usize,
) -> Result<(u16, Head), ProxyError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&up.buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                let http10 = resp.version == Some(0);
                let framed =
                    http1::framing(resp.headers, http10, Message::Response { status, to_head })
                        .map_err(|e| ProxyError::Malformed(e.0))?;
                if (100..200).contains(&status) {
                    up.buf.advance(len);
                    continue;
                }
                let raw = up.buf.split_to(len);
                let mut bytes = Vec::with_capacity(len);
                strip_head(&raw, &mut bytes);
                return Ok((status, Head { bytes, framed }));
            }
            Ok(httparse::Status::Partial) => {
                if up.buf.len() > max_head {
                    return Err(ProxyError::TooLarge);
                }
                if up.fill().await? == 0 {
                    return Err(ProxyError::Closed);
                }
            }
            Err(_) => return Err(ProxyError::Malformed("not an HTTP/1.1 answer")),
        }
    }
}

/// Copies exactly `n` body bytes from `from` (its buffer first) to `to`.
pub(super) async fn stream_through(
    from: &mut Side,
    to: &mut TcpStream,
    mut n: u64,
) -> Result<(), ProxyError> {
    loop {
        let take = usize::try_from(n).unwrap_or(usize::MAX).min(from.buf.len());
        if take > 0 {
            to.write_all(&from.buf[..take]).await?;
            from.buf.advance(take);
            n -= take as u64;
        }
        if n == 0 {
            return Ok(());
        }
        if from.fill().await? == 0 {
            return Err(ProxyError::Closed);
        }
    }
}
