//! Downstream TLS: the certificate for each domain, chosen by SNI, and the
//! server config built from `[server.tls]` (reloaded with the config).

use crate::config::raw::CertRaw;
use crate::config::Problems;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Picks a certificate by SNI: exact domain, then the longest `*.suffix`,
/// then the first certificate (clients without SNI).
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// (".suffix", key), longest first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, k)| k.clone())
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

fn load(c: &CertRaw, provider: &rustls::crypto::CryptoProvider) -> Result<CertifiedKey, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| format!("cannot read {}: {e}", c.cert))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", c.cert))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", c.cert));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key)
        .map_err(|e| format!("cannot read key {}: {e}", c.key))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable key {}: {e}", c.key))?;
    Ok(CertifiedKey::new(chain, signer))
}

/// The server config for `certs`; problems are reported at `at.certs[i]`.
pub fn server_config(
    certs: &[CertRaw],
    at: &str,
    p: &mut Problems,
) -> Option<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut exact = HashMap::new();
    let mut wildcard = Vec::new();
    let mut default = None;
    for (i, c) in certs.iter().enumerate() {
        let key = match load(c, &provider) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                p.error(format!("{at}.certs[{i}]"), e);
                continue;
            }
        };
        if c.domains.is_empty() {
            p.error(
                format!("{at}.certs[{i}].domains"),
                "at least one domain is required",
            );
        }
        for d in &c.domains {
            let d = d.to_ascii_lowercase();
            match d.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => {
                    wildcard.push((suffix.to_string(), key.clone()))
                }
                _ => {
                    exact.insert(d, key.clone());
                }
            }
        }
        default.get_or_insert(key);
    }
    wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    let resolver = SniResolver {
        exact,
        wildcard,
        default: default?,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// A client connection's TLS session: rustls driven over our own
/// buffers, so reads stay cancel-safe (no bytes are lost when a read is
/// cancelled on timeout or drain).
pub struct Session {
    conn: rustls::ServerConnection,
    /// Ciphertext read from the socket, not yet given to rustls.
    pub cipher_in: Vec<u8>,
}

impl Session {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: rustls::ServerConnection::new(config)?,
            cipher_in: Vec::with_capacity(4096),
        })
    }

    /// Moves decrypted bytes to the end of `inbuf`: `Some(n)` (0 = the
    /// client closed cleanly), or `None` when more ciphertext is needed.
    pub fn plaintext_into(&mut self, inbuf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
        use std::io::Read;
        let len = inbuf.len();
        if inbuf.capacity() - len < 1024 {
            inbuf.reserve(inbuf.capacity().max(4096));
        }
        inbuf.resize(inbuf.capacity(), 0);
        let read = self.conn.reader().read(&mut inbuf[len..]);
        match read {
            Ok(n) => {
                inbuf.truncate(len + n);
                Ok(Some(n))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                inbuf.truncate(len);
                Ok(None)
            }
            Err(e) => {
                inbuf.truncate(len);
                Err(e)
            }
        }
    }

    /// Gives buffered ciphertext to rustls. Errs on a TLS protocol error
    /// or when no progress is possible.
    pub fn feed(&mut self) -> std::io::Result<()> {
        let mut rest = &self.cipher_in[..];
        while !rest.is_empty() && self.conn.wants_read() {
            if self.conn.read_tls(&mut rest)? == 0 {
                break;
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
        }
        let used = self.cipher_in.len() - rest.len();
        if used == 0 && !self.cipher_in.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "TLS session stalled",
            ));
        }
        self.cipher_in.drain(..used);
        Ok(())
    }

    /// Encrypts `plain` (as much as rustls takes) and returns how much.
    pub fn seal(&mut self, plain: &[u8]) -> std::io::Result<usize> {
        use std::io::Write;
        self.conn.writer().write(plain)
    }

    /// Ciphertext waiting to be written to the socket, appended to `out`.
    pub fn output(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        Ok(())
    }

    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}
