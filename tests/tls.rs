//! Downstream TLS: certificates chosen by SNI (exact and wildcard),
//! keep-alive and streaming over TLS, certificates reloaded with SIGHUP.

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// Writes a leaf for `names` and its key; returns (cert, key) paths.
    fn leaf(&self, dir: &TempDir, file: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        let (c, k) = (
            dir.0.join(format!("{file}.pem")),
            dir.0.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<Tls> {
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let tcp = connect(addr);
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake (verifying the certificate) before returning.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn tls_addr(g: &Gateway) -> SocketAddr {
    let lines = g.proc.lines.lock().unwrap();
    let line = lines
        .iter()
        .find(|l| l.ends_with("(tls)"))
        .expect("tls listener line");
    line.trim_start_matches("modelgate listening on ")
        .trim_end_matches(" (tls)")
        .parse()
        .unwrap()
}

fn config(up: &MockLlm, certs: &str) -> String {
    format!(
        r#"{}
[server.tls]
listen = ["127.0.0.1:0"]
{certs}
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
        server_section(2),
        url = up.url()
    )
}

fn cert_entry(domains: &[&str], (cert, key): &(String, String)) -> String {
    let d: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "[[server.tls.certs]]\ndomains = [{}]\ncert = {cert:?}\nkey = {key:?}\n",
        d.join(", ")
    )
}

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn sni_picks_the_certificate_and_requests_flow_over_tls() {
    let up = MockLlm::start("up");
    let dir = TempDir::new();
    let ca = Ca::new();
    let a = ca.leaf(&dir, "a", &["a.example.com"]);
    let b = ca.leaf(&dir, "b", &["*.b.example.com"]);
    let certs = format!(
        "{}{}",
        cert_entry(&["a.example.com"], &a),
        cert_entry(&["*.b.example.com"], &b)
    );
    let g = Gateway::start_raw(&config(&up, &certs));
    let addr = tls_addr(&g);
    let client = ca.client();
    // Each name verifies only if the gateway chose its certificate.
    for sni in ["a.example.com", "x.b.example.com"] {
        let mut s = tls_connect(&client, addr, sni).unwrap_or_else(|e| panic!("{sni}: {e}"));
        // Two requests on one TLS connection, then a stream.
        for _ in 0..2 {
            s.write_all(&raw_request(
                "POST",
                "/v1/chat/completions",
                &[("host", sni)],
                CHAT,
            ))
            .unwrap();
            let mut r = BufReader::new(&mut s);
            let resp = read_response(&mut r, false).unwrap();
            assert_eq!(resp.status, 200, "{sni}: {}", resp.text());
            assert_eq!(resp.json()["object"], "chat.completion");
        }
        let stream = br#"{"model":"m","stream":true,"messages":[]}"#;
        s.write_all(&raw_request(
            "POST",
            "/v1/chat/completions",
            &[("host", sni)],
            stream,
        ))
        .unwrap();
        let resp = read_response(&mut BufReader::new(&mut s), false).unwrap();
        assert_eq!(sse_data(&resp.body).last().unwrap(), "[DONE]");
    }
    // A name no certificate covers gets the first one: verification fails.
    assert!(tls_connect(&client, addr, "other.example.org").is_err());
    // The plain listener still speaks plain HTTP.
    let r = request(g.addr, "POST", "/v1/chat/completions", &[], CHAT);
    assert_eq!(r.status, 200);
}

#[test]
fn certificates_reload_with_sighup_and_bad_files_are_rejected() {
    let up = MockLlm::start("up");
    let dir = TempDir::new();
    let ca = Ca::new();
    let first = ca.leaf(&dir, "first", &["api.example.com"]);
    let g = Gateway::start_raw(&config(&up, &cert_entry(&["api.example.com"], &first)));
    let addr = tls_addr(&g);
    let client = ca.client();
    assert!(tls_connect(&client, addr, "api.example.com").is_ok());
    assert!(tls_connect(&client, addr, "new.example.com").is_err());
    // New certificate for another name: applied to new connections.
    let second = ca.leaf(&dir, "second", &["new.example.com"]);
    std::fs::write(
        &g.config_path,
        config(&up, &cert_entry(&["new.example.com"], &second)),
    )
    .unwrap();
    g.signal("HUP");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while tls_connect(&client, addr, "new.example.com").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate not served"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A missing key file: `check` names the field, reload keeps the old.
    let broken = config(
        &up,
        &cert_entry(
            &["new.example.com"],
            &(second.0.clone(), "/nonexistent.key".into()),
        ),
    );
    let path = dir.0.join("broken.toml");
    std::fs::write(&path, &broken).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.tls.certs[0]: cannot read key"));
    std::fs::write(&g.config_path, broken).unwrap();
    g.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(tls_connect(&client, addr, "new.example.com").is_ok());
}
