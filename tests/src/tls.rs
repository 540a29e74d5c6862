//! TLS for the tests of the wss:// and https:// listeners: a test CA made at test time (rcgen),
//! server certificates it signs written as PEM files, and clients (wss, https) that trust only
//! that CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::WAIT;

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate: its DER (to compare with what a client was shown) and PEM texts.
pub struct ServerCert {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ServerCert {
    /// Writes the certificate and key to `dir/<name>.crt` and `dir/<name>.key`; returns the paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "callgate test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// The CA certificate, PEM (for a browser or another client to trust).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost with common name `cn`, signed by this CA.
    pub fn issue(&self, cn: &str) -> ServerCert {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert { der: cert.der().clone(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// A TLS client that trusts this CA only.
    pub fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(cfg))
    }

    /// A TLS connection to `addr` (name 127.0.0.1), verified against this CA.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        tokio::time::timeout(WAIT, self.connector().connect(name, tcp))
            .await
            .expect("TLS handshake within the wait bound")
    }
}

/// The leaf certificate the server showed on `stream`.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("the server sent a certificate")[0].clone().into_owned()
}

/// A WebSocket client over TLS, for what the tests of the TLS listeners need.
pub struct WssClient {
    pub ws: WebSocketStream<TlsStream<TcpStream>>,
    /// The certificate the server showed.
    pub cert: CertificateDer<'static>,
}

impl WssClient {
    /// wss://addr/ through `ca`'s client.
    pub async fn connect(ca: &TestCa, addr: SocketAddr) -> WssClient {
        let tls = ca.connect(addr).await.expect("TLS handshake");
        let cert = peer_cert(&tls);
        let (ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/"), tls).await.expect("websocket upgrade");
        WssClient { ws, cert }
    }

    pub async fn send(&mut self, message: &str, obj: Value) {
        let text = json!({"message": message, "data": [obj]}).to_string();
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    /// The next frame named `message`, as its `data[0]`; panics if the connection closes first.
    pub async fn expect(&mut self, message: &str) -> Map<String, Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame within the wait bound");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server frames are JSON");
                    if v["message"] == message {
                        return v["data"][0].as_object().cloned().unwrap_or_default();
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended before {message}: {other:?}"),
            }
        }
    }
}

/// POSTs `body` to `https://addr{path}` through `ca`'s client; (status, body, certificate shown).
pub async fn https_post(
    ca: &TestCa,
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> (u16, String, CertificateDer<'static>) {
    let mut tls = ca.connect(addr).await.expect("TLS handshake");
    let cert = peer_cert(&tls);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    // A server may end TLS without close_notify after Connection: close; what was read counts.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut buf)).await.expect("HTTPS answer in time");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body, cert)
}
