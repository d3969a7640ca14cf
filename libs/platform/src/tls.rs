//! TLS on a server's gRPC port (the gateway's), accepted here rather than by tonic: tonic's
//! acceptor is fixed when the server starts, and a certificate renewed in its files (cert-manager
//! renews before expiry) would then take a restart. Here each new connection takes the
//! configuration current when it arrives; connections already open keep theirs.
//!
//! The streams are tokio-rustls', for which tonic provides the connection's `TlsConnectInfo`: a
//! handler finds the client's certificates where tonic's own acceptor would have put them.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// A client that has not finished its handshake by then is dropped: it holds no slot for long.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Handshakes under way at once; past it, new connections wait in the listen queue.
const HANDSHAKES_AT_ONCE: usize = 1024;

/// The TLS configuration new connections get; replaced when the files change.
#[derive(Clone, Debug)]
pub struct Tls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl Tls {
    pub fn new(config: ServerConfig) -> Tls {
        Tls { current: Arc::new(RwLock::new(Arc::new(config))) }
    }

    /// From now on, new connections get `config`.
    pub fn replace(&self, config: ServerConfig) {
        *self.current.write().expect("TLS configuration lock") = Arc::new(config);
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().expect("TLS configuration lock").clone())
    }
}

/// Who may present a client certificate: the CAs (PEM) whose certificates are asked for and checked
/// (optional for the client: a call may still carry a bearer token), and the revocation lists (PEM)
/// of those CAs that publish one.
pub struct ClientAuthorities<'a> {
    pub certificates: &'a [u8],
    pub revocation_lists: Option<&'a [u8]>,
}

/// A server configuration from PEM: the certificate chain (leaf first), its key, and who may
/// present a client certificate. gRPC over HTTP/2 only (ALPN `h2`).
pub fn server_config(
    certificates: &[u8],
    key: &[u8],
    clients: Option<ClientAuthorities<'_>>,
) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(certificates)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("the certificate file is not PEM: {error}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".to_owned());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|error| format!("the key file holds no usable key: {error}"))?;
    let builder = ServerConfig::builder();
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(clients) => {
            let mut roots = rustls::RootCertStore::empty();
            for authority in CertificateDer::pem_slice_iter(clients.certificates) {
                let authority = authority.map_err(|error| format!("the client CA file is not PEM: {error}"))?;
                roots.add(authority).map_err(|error| format!("a client CA cannot be used: {error}"))?;
            }
            let lists = CertificateRevocationListDer::pem_slice_iter(clients.revocation_lists.unwrap_or_default())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("the client CRL file is not PEM: {error}"))?;
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .with_crls(lists)
                // The client's own certificate is looked up in its CA's list; a CA that publishes
                // none is not a reason to refuse its certificates.
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status()
                .allow_unauthenticated()
                .build()
                .map_err(|error| format!("the client CAs or CRLs cannot be used: {error}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| format!("the certificate and key cannot be used together: {error}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The TLS connections of a stream of accepted TCP connections: each handshake a task of its own
/// (side by side, on every worker thread, as a reconnecting crowd needs), with the configuration
/// current when its connection came; one that fails or takes longer than [`HANDSHAKE`] is dropped
/// (it never reaches the server).
pub fn incoming<S, IO, E>(tcp: S, tls: Tls) -> impl Stream<Item = Result<TlsStream<IO>, E>>
where
    S: Stream<Item = Result<IO, E>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tcp.map(move |accepted| {
        let acceptor = tls.acceptor();
        async move {
            let io = match accepted {
                Err(error) => return Some(Err(error)),
                Ok(io) => io,
            };
            let handshake = tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        None
                    }
                }
            });
            handshake.await.ok().flatten().map(Ok)
        }
    })
    .buffer_unordered(HANDSHAKES_AT_ONCE)
    .filter_map(std::future::ready)
}
