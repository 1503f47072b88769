//! A lean HTTP/1.1 client connection for `push`: one task owns one connection and sends its
//! requests one after the other, as WeChat's pushers do. No pool, no channels between tasks:
//! at tens of thousands of pushes a second, the hand-offs of a general client cost more than
//! the requests (BENCHMARKS.md). Responses are parsed with `httparse`, framed by
//! [`datacube_protocol::http1`] (the proxy's rules: ambiguous framing refused); bodies by
//! `Content-Length`, chunked, or up to the end of the connection.

use bytes::{Buf, Bytes, BytesMut};
use datacube_protocol::http1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Response heads larger than this are refused.
const MAX_HEAD: usize = 64 * 1024;
/// Response bodies larger than this are refused (a passive reply is a few KB).
pub const MAX_BODY: usize = 4 << 20;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection failed or closed early.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer is not HTTP/1.x.
    #[error("not an HTTP/1.1 answer: {0}")]
    Parse(String),
    /// The answer is too large.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// An answer: status, body, and whether the connection can carry another request.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
    /// The server keeps the connection open.
    pub keep_alive: bool,
}

/// One connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(8192),
        })
    }

    /// Sends a complete request (head and body) and reads its answer.
    pub async fn request(&mut self, request: &[u8]) -> Result<Answer, HttpError> {
        self.stream.write_all(request).await?;
        self.read_answer().await
    }

    async fn fill(&mut self) -> Result<usize, HttpError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        Ok(n)
    }

    async fn read_answer(&mut self) -> Result<Answer, HttpError> {
        // The head (1xx answers come before the real one).
        let (status, framed) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = resp.code.unwrap_or(0);
                    let http10 = resp.version == Some(0);
                    let framed = http1::framing(
                        resp.headers,
                        http10,
                        http1::Message::Response {
                            status,
                            to_head: false,
                        },
                    )
                    .map_err(|e| HttpError::Parse(e.to_string()))?;
                    self.buf.advance(len);
                    if (100..200).contains(&status) {
                        continue;
                    }
                    break (status, framed);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(HttpError::TooLarge(MAX_HEAD));
                    }
                    if self.fill().await? == 0 {
                        return Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Err(e) => return Err(HttpError::Parse(e.to_string())),
            }
        };
        let eof = || HttpError::Io(std::io::ErrorKind::UnexpectedEof.into());
        let body = match framed.framing {
            http1::Framing::None => Bytes::new(),
            http1::Framing::Length(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_BODY)
                    .ok_or(HttpError::TooLarge(MAX_BODY))?;
                while self.buf.len() < n {
                    if self.fill().await? == 0 {
                        return Err(eof());
                    }
                }
                self.buf.split_to(n).freeze()
            }
            http1::Framing::Chunked => {
                let mut at = 0;
                let end = loop {
                    match http1::chunked_end(&self.buf, at) {
                        http1::ChunkScan::Done(end) => break end,
                        http1::ChunkScan::More(next) => at = next,
                        http1::ChunkScan::Bad(why) => return Err(HttpError::Parse(why.into())),
                    }
                    if self.buf.len() > MAX_BODY + MAX_HEAD {
                        return Err(HttpError::TooLarge(MAX_BODY));
                    }
                    if self.fill().await? == 0 {
                        return Err(eof());
                    }
                };
                let raw = self.buf.split_to(end);
                Bytes::from(
                    http1::dechunk(&raw).ok_or_else(|| HttpError::Parse("a bad chunk".into()))?,
                )
            }
            http1::Framing::Close => {
                while self.fill().await? > 0 {
                    if self.buf.len() > MAX_BODY {
                        return Err(HttpError::TooLarge(MAX_BODY));
                    }
                }
                self.buf.split().freeze()
            }
        };
        Ok(Answer {
            status,
            body,
            keep_alive: framed.keep_alive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn answer_with(raw: &'static [u8]) -> Result<Answer, HttpError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            // In pieces, to exercise partial reads.
            for part in raw.chunks(7) {
                s.write_all(part).await.unwrap();
                s.flush().await.unwrap();
            }
        });
        let mut conn = Conn::connect(&addr).await.unwrap();
        conn.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .await
    }

    #[tokio::test]
    async fn answers_of_every_framing_are_read() {
        // The answer, then its status, body and whether the connection stays open.
        for (raw, status, body, keep_alive) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess"[..], 200, &b"success"[..], true),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsucc\r\n3;x=y\r\ness\r\n0\r\nX-T: 1\r\n\r\n", 200, b"success", true),
            (b"HTTP/1.0 500 Oops\r\n\r\nboom", 500, b"boom", false),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200, b"", false),
        ] {
            let a = answer_with(raw).await.unwrap();
            let shown = String::from_utf8_lossy(raw);
            assert_eq!((a.status, &a.body[..], a.keep_alive), (status, body, keep_alive), "{shown}");
        }
        assert!(answer_with(b"SSH-2.0-OpenSSH\r\n\r\n").await.is_err());
        assert!(
            answer_with(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
                .await
                .is_err()
        );
    }

    /// The framings a smuggler plays on — CL.TE, TE.CL, TE.TE, two lengths — are errors, not
    /// guesses.
    #[tokio::test]
    async fn ambiguous_answers_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\nsuccess!",
            "HTTP/1.1 200 OK\r\nContent-Length: +7\r\n\r\nsuccess",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\nsuccess\r\n0\r\n\r\n",
        ] {
            let e = answer_with(raw.as_bytes()).await;
            assert!(matches!(e, Err(HttpError::Parse(_))), "{raw:?}: {e:?}");
        }
    }
}
