//! The certificate of the TLS listeners (`[tls]`): loaded from PEM files at start, re-read on
//! SIGHUP ([`CertStore::reload`]). rustls asks [`CertStore`] for the certificate at each
//! handshake, so a reload changes what new connections get and leaves open ones alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::RwLock;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The current certificate and key of the TLS listeners.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Loads `cert` (PEM chain) and `key` (PEM private key); an error names the file at fault.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertStore>> {
        let ck = load_pair(cert, key)?;
        Ok(Arc::new(CertStore { cert: cert.to_owned(), key: key.to_owned(), current: RwLock::new(Arc::new(ck)) }))
    }

    /// Re-reads both files. On error the certificate in use stays and the error is returned.
    pub fn reload(&self) -> anyhow::Result<()> {
        let ck = load_pair(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(ck);
        Ok(())
    }

    /// A rustls server config (HTTP/1.1 only, as the listeners speak) using this store.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn load_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .with_context(|| format!("tls.cert {}: cannot read a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert {}: no CERTIFICATE in the file", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls.key {}: cannot read a PEM private key", key.display()))?;
    let signing = aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("tls.key {}: unsupported private key", key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().with_context(|| {
        format!("tls.key {} is not the key of the certificate in tls.cert {}", key.display(), cert.display())
    })?;
    Ok(ck)
}
