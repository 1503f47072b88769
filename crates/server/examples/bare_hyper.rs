//! The floor of serving on hyper (issue 32): a bare hyper HTTP/1 server on single-threaded
//! runtimes, one per core as `serve`'s event loops, answering every request with the same
//! bytes and headers as a datacube answer — no edge, no metrics, no lookup. What datacube's
//! hits cost above it is ours; what it costs above nginx is hyper's and tokio's.
//!
//!   cargo run --release -p datacube-server --example bare_hyper -- 127.0.0.1:18183 FILE
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

/// datacube's answers' type (as WeChat's).
const TYPE: &str = "application/json; encoding=utf-8";

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_hyper ADDR ANSWER_FILE");
        std::process::exit(2);
    };
    let answer = Bytes::from(std::fs::read(file)?);
    let listener = std::net::TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let listener = listener.try_clone().expect("listener");
            let answer = answer.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let answer = answer.clone();
                        tokio::spawn(async move {
                            let svc =
                                hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                                    let answer = answer.clone();
                                    async move {
                                        use http_body_util::BodyExt as _;
                                        let _ = req.into_body().collect().await;
                                        let mut resp = hyper::Response::new(Full::new(answer));
                                        let h = resp.headers_mut();
                                        h.insert(CONTENT_TYPE, HeaderValue::from_static(TYPE));
                                        h.insert("RetKey", HeaderValue::from_static("11"));
                                        h.insert("LogicRet", HeaderValue::from_static("0"));
                                        Ok::<_, Infallible>(resp)
                                    }
                                });
                            let _ = http1::Builder::new()
                                .title_case_headers(true)
                                .writev(false)
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                });
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
