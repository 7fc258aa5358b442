//! TLS for `https://` targets: rustls with the webpki roots, or the CA
//! certificates of `--cacert` instead (for private or self-signed servers).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};

/// What each connection's handshake needs.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

impl Tls {
    /// TLS to `host` (a name or an IP literal), trusting `cacert` if given.
    pub fn new(host: &str, cacert: Option<&Path>) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        match cacert {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("--cacert {shown}: {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("--cacert {shown}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("--cacert {shown}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("--cacert {shown}: no certificate in the file"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
        })
    }
}
