//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` URL parameters and meanings
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html>), over rustls:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | no |
//! | `require` | always | no — unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | always | signed by `sslrootcert`'s CAs (`system`: the public CAs) |
//! | `verify-full` | always | as `verify-ca`, and issued for the host name |
//!
//! Without `sslrootcert`, `verify-ca` and `verify-full` trust the public CAs (libpq reads
//! `~/.postgresql/root.crt`; a managed service's CA bundle is given with `sslrootcert=`).

use std::sync::Arc;

use postgres::config::SslMode as PgSslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// `sslmode`, as libpq names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// How to connect: the mode, and the connector for the modes that use TLS.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) mode: SslMode,
    connector: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query (the `postgres` crate knows neither
/// `verify-ca` nor `verify-full`); returns the URL without them and how to connect.
pub(crate) fn from_url(url: &str) -> Result<(String, Tls), String> {
    let (main, query) = crate::url::split_query(url);
    let query = query.unwrap_or("");
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                    "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
                ))
                    }
                })
            }
            "sslrootcert" => root = Some(percent_decoded(value)),
            _ => kept.push(param),
        }
    }
    let mode = match (mode, &root) {
        // libpq: `require` with a root certificate verifies the chain.
        (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
        (Some(mode), _) => mode,
        (None, _) => SslMode::Prefer,
    };
    let url = if kept.is_empty() {
        main.to_owned()
    } else {
        format!("{main}?{}", kept.join("&"))
    };
    let connector = match mode {
        SslMode::Disable => None,
        _ => Some(connector(mode, root.as_deref())?),
    };
    Ok((url, Tls { mode, connector }))
}

impl Tls {
    /// What the `postgres` crate is told (the certificate checks are the connector's).
    pub(crate) fn pg_mode(&self) -> PgSslMode {
        match self.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        }
    }

    /// Connects with `config` (whose ssl mode [`Tls::pg_mode`] set).
    pub(crate) fn connect(
        &self,
        config: &postgres::Config,
    ) -> Result<postgres::Client, postgres::Error> {
        match &self.connector {
            None => config.connect(postgres::NoTls),
            Some(tls) => config.connect(tls.clone()),
        }
    }
}

/// `value` with its `%XX` escapes decoded (as the driver decodes keys and values); invalid
/// escapes kept.
pub(crate) fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn connector(
    mode: SslMode,
    root: Option<&str>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Lenient {
            provider,
            chain: None,
        }),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            match root {
                None | Some("system") => {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                Some(path) => {
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                        .map_err(|e| format!("sslrootcert={path}: {e}"))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("sslrootcert={path}: {e}"))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!("sslrootcert={path}: no certificate in it"));
                    }
                }
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == SslMode::VerifyCa {
                Arc::new(Lenient {
                    provider,
                    chain: Some(webpki),
                })
            } else {
                webpki
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// What `prefer`, `require` and `verify-ca` check of the server's certificate: for the first
/// two nothing (libpq's meaning: encrypted, not authenticated), for `verify-ca` its chain but
/// not its name. The handshake's signatures are checked either way.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    /// `verify-ca`'s chain check.
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
