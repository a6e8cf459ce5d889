//! The federation listener: HTTPS with the configured certificate, serving
//! the key server and the version endpoint.

use std::{net::SocketAddr, sync::Arc};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, RootCertStore, pki_types::ServerName},
};

use crate::{
    both_backends,
    harness::{Backend, TestServer},
};

both_backends!(federation_listener_speaks_https);

/// A GET over TLS to `addr`, trusting only `ca_pem`; returns status and body.
async fn https_get(addr: SocketAddr, ca_pem: &str, host: &str, path: &str) -> (u16, Value) {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(host.to_owned()).expect("server name");
    let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, serde_json::from_str(body.trim()).unwrap_or(Value::Null))
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).map(|c| c.expect("PEM cert")).collect()
}

async fn federation_listener_speaks_https(backend: Backend) {
    let cert = rcgen::generate_simple_self_signed(vec!["tessera.test".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");

    let server = TestServer::start_with(backend, |c| {
        c.federation_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.tls_certificate = Some(cert_path.clone());
        c.tls_private_key = Some(key_path.clone());
    })
    .await;
    let addr = server.federation_addr.expect("federation listener");
    let ca = cert.cert.pem();

    let (status, version) = https_get(addr, &ca, "tessera.test", "/_matrix/federation/v1/version").await;
    assert_eq!(status, 200);
    assert_eq!(version["server"]["name"], "Tessera");
    let (status, keys) = https_get(addr, &ca, "tessera.test", "/_matrix/key/v2/server").await;
    assert_eq!(status, 200);
    assert_eq!(keys["server_name"], "tessera.test");
    // The same key is published on both listeners.
    let client_keys = server.client().get("/_matrix/key/v2/server").await.ok();
    assert_eq!(client_keys["verify_keys"], keys["verify_keys"]);
    let (status, unknown) = https_get(addr, &ca, "tessera.test", "/_matrix/federation/v1/nope").await;
    assert_eq!((status, unknown["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")));
}
