//! TLS for both sides of a session of any protocol: the certificate Proctor presents to clients (from
//! the configuration, or self-signed on first start and kept in the data dir), and the client
//! configuration used towards a target, with libpq's `require` and `verify-full` meanings. It builds
//! rustls configurations only; the handshakes are the protocol crates' (each starts TLS at its own
//! point of its exchange).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use proctor_core::{Config, UpstreamTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

/// TLS for one protocol's listener: what it presents to clients, and what it expects of each
/// connection's target.
pub struct GatewayTls {
    pub front: Arc<ServerConfig>,
    /// By connection name; `None` where the connection's TLS is disabled.
    pub upstream: HashMap<String, Option<Arc<ClientConfig>>>,
}

impl GatewayTls {
    /// Both sides as `config` sets them; fails if a certificate or CA file cannot be used.
    pub fn new(config: &Config) -> Result<Self, TlsError> {
        let server = &config.server;
        let front = server_config(
            server.tls_cert_file.as_deref(),
            server.tls_key_file.as_deref(),
            &server.data_dir,
        )?;
        let mut upstream = HashMap::new();
        for connection in &config.connection {
            let tls = upstream_config(connection.tls, connection.tls_ca_file.as_deref())?;
            upstream.insert(connection.name.clone(), tls);
        }
        Ok(Self { front, upstream })
    }

    /// The client configuration towards `connection`'s target, if it uses TLS.
    pub fn upstream(&self, connection: &str) -> Option<Arc<ClientConfig>> {
        self.upstream.get(connection).cloned().flatten()
    }
}

/// The server configuration: the given certificate, or the self-signed one in `data_dir` (made now if
/// missing, key file mode 0600).
pub fn server_config(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    data_dir: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert_file, key_file) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf()),
        _ => {
            let cert = data_dir.join("tls-cert.pem");
            let key = data_dir.join("tls-key.pem");
            if !cert.exists() || !key.exists() {
                generate_self_signed(&cert, &key)?;
            }
            (cert, key)
        }
    };
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn generate_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, certified.cert.pem()).map_err(|e| file_error(cert_path, e))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    file.write_all(contents).map_err(|e| file_error(path, e))
}

/// The client configuration towards a target, or `None` when TLS is disabled.
pub fn upstream_config(
    mode: UpstreamTls,
    ca_file: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match mode {
        UpstreamTls::Disable => return Ok(None),
        UpstreamTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth(),
        UpstreamTls::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    for cert in read_certs(path)? {
                        roots.add(cert)?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// libpq's `sslmode=require`: the channel is encrypted but the server's certificate is not checked.
/// Signatures are still verified, so the handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Takes over `stream` as the TLS server Proctor is to its clients, once the protocol agreed to it.
pub async fn accept(
    config: &Arc<ServerConfig>,
    stream: crate::BoxedStream,
) -> std::io::Result<crate::BoxedStream> {
    let accepted = tokio_rustls::TlsAcceptor::from(config.clone())
        .accept(stream)
        .await?;
    Ok(Box::new(accepted))
}

/// Takes over `stream` as a TLS client of `target`, whose certificate must name its
/// `tls_server_name`, or else the host of its address.
pub async fn connect(
    config: &Arc<ClientConfig>,
    target: &proctor_core::ConnectionConfig,
    stream: crate::BoxedStream,
) -> Result<crate::BoxedStream, crate::ConnectError> {
    let name = target
        .tls_server_name
        .clone()
        .unwrap_or_else(|| target.host().to_owned());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| crate::ConnectError::Tls(format!("{name:?} is not a valid server name")))?;
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(server_name, stream)
        .await
        .map_err(|e| crate::ConnectError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_made_once_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        server_config(None, None, dir.path()).unwrap();
        let key = dir.path().join("tls-key.pem");
        let first = std::fs::read(&key).unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        server_config(None, None, dir.path()).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), first);
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("nope.pem");
        let err = server_config(Some(&cert), Some(&cert), dir.path()).unwrap_err();
        assert!(err.to_string().contains("nope.pem"));
    }
}
