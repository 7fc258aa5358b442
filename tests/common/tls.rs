//! A TLS front for tests of https upstreams: terminates TLS with a
//! certificate for `localhost` signed by a throwaway CA, and shuttles the
//! bytes to a plain backend (mock-llm).

use super::TempDir;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A TLS front for `backend`, with a leaf for `localhost` signed by a CA
/// whose PEM is written to the returned path.
pub fn tls_front(backend: SocketAddr, dir: &TempDir) -> (SocketAddr, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let ca_path = dir.0.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || relay_tls(tcp, config, backend));
        }
    });
    (addr, ca_path)
}

/// Shuttles bytes between one TLS client and the plain backend.
fn relay_tls(tcp: TcpStream, config: Arc<rustls::ServerConfig>, backend: SocketAddr) {
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut plain = TcpStream::connect(backend).unwrap();
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..4000 {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => plain.write_all(&buf[..n]).unwrap(),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
        match plain.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                tls.write_all(&buf[..n]).unwrap();
                tls.flush().unwrap();
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}
