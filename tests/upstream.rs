//! Upstream connections: https with a CA file, a stale pooled connection
//! retried once on a fresh one, and the epoll driver.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

/// A TLS front for `backend`, with a leaf for `localhost` signed by a CA
/// whose PEM is written to the returned path.
fn tls_front(backend: SocketAddr, dir: &TempDir) -> (SocketAddr, std::path::PathBuf) {
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

#[test]
fn https_upstream_with_a_ca_file() {
    let up = MockLlm::start("tls-up");
    let dir = TempDir::new();
    let (front, ca) = tls_front(up.addr, &dir);
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "secure"
provider = "openai_compatible"
base_url = "https://localhost:{port}/v1"
ca_file = "{ca}"

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "secure" }} }}
"#,
        port = front.port(),
        ca = ca.display()
    ));
    for _ in 0..3 {
        let r = g.post("/v1/chat/completions", CHAT);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-mock-name"), Some("tls-up"));
    }
    // base_url path /v1 + client path /v1/...: not doubled.
    assert_eq!(up.requests()[0]["path"], "/v1/chat/completions");
    let stream = r#"{"model":"m","stream":true,"messages":[]}"#;
    let r = g.post("/v1/chat/completions", stream);
    assert_eq!(sse_data(&r.body).last().unwrap(), "[DONE]");
}

#[test]
fn https_upstream_with_an_untrusted_certificate_fails_cleanly() {
    let up = MockLlm::start("tls-up");
    let dir = TempDir::new();
    let (front, _ca) = tls_front(up.addr, &dir);
    // No ca_file: webpki roots do not know this CA.
    let g = Gateway::start(&format!(
        r#"
[[services]]
name = "secure"
provider = "openai_compatible"
base_url = "https://localhost:{port}"

[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "secure" }} }}
"#,
        port = front.port()
    ));
    let r = g.post("/v1/chat/completions", CHAT);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_connect_failed");
    assert!(up.requests().is_empty());
}

/// An upstream that answers one request per connection with keep-alive
/// framing, then silently closes the connection once idle.
fn closing_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = BufReader::new(tcp.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let answer = r#"{"id":"x","object":"chat.completion","choices":[]}"#;
                let mut tcp = tcp;
                write!(tcp, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                // Closed while the gateway keeps it pooled.
            });
        }
    });
    (addr, conns)
}

#[test]
fn stale_pooled_connection_is_retried_once_on_a_fresh_one() {
    let (addr, conns) = closing_upstream();
    let g = Gateway::start_raw(&format!(
        r#"{}
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "http://{addr}"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        server_section(1)
    ));
    for i in 1..=3 {
        let r = g.post("/v1/chat/completions", CHAT);
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[test]
fn epoll_driver_serves_the_same() {
    let up = MockLlm::start("up");
    let config = format!(
        r#"{}
[[services]]
name = "up"
provider = "openai_compatible"
base_url = "{url}"
[[model_apis]]
name = "chat"
scenario = "text"
protocol = "openai"
domains = ["*"]
service = {{ mode = "single", target = {{ service = "up" }} }}
"#,
        server_section(2)
            .replace("workers = 2", "workers = 2\nio = \"epoll\"")
            .replace("level = \"warn\"", "level = \"info\""),
        url = up.url()
    );
    let g = Gateway::start_raw(&config);
    assert!(
        g.proc.stderr_text().contains("io: epoll (configured)"),
        "{}",
        g.proc.stderr_text()
    );
    let r = g.post("/v1/chat/completions", CHAT);
    assert_eq!(r.status, 200);
    let r = g.post(
        "/v1/chat/completions",
        r#"{"model":"m","stream":true,"messages":[]}"#,
    );
    assert_eq!(sse_data(&r.body).last().unwrap(), "[DONE]");
    // Idle keep-alive connections and a bad request work the same way.
    let r = request(g.addr, "POST", "/v1/chat/completions", &[], b"not json");
    assert_eq!(r.status, 400);
}
