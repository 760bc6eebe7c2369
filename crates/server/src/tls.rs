//! HTTPS on the listener (`--tls-cert`, `--tls-key`): Amazon Data Firehose delivers only to
//! HTTPS endpoints. rustls with the ring provider; TLS 1.2 and 1.3; HTTP/1.1 inside.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::error::{Error, Result};

/// The certificate chain and private key files (PEM) of the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, then the intermediates that lead to a trusted root.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
}

/// Builds the acceptor of `files`.
///
/// # Errors
/// [`Error::Invalid`] naming the file when it cannot be read, holds no certificate or key, or
/// the key does not fit the certificate.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let bad = |path: &Path, what: String| Error::Invalid(format!("{}: {what}", path.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(&files.cert, "no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        bad(
            &files.key,
            format!("{e} (expected a PEM private key: PKCS #8, PKCS #1 or SEC1)"),
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(&files.key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
