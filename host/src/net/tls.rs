//! TLS on the host's listeners (Kafka's SSL listeners, the Pulsar endpoint, the admin API):
//! rustls with ring, TLS 1.2 and 1.3 only, a PEM certificate chain and key, and optionally
//! client certificates verified against a CA (Kafka's `ssl.client.auth`), whose subject becomes
//! the connection's principal as Kafka names it (`User:CN=…,O=…`, RFC 2253).
//!
//! The files are looked at again (at most once a second, as connections are accepted): a
//! renewed certificate, key or CA is used from the next handshake on, without a restart. A
//! change that does not load (a half-written file, a key that does not match) is logged and the
//! previous files stay in use.

use parking_lot::Mutex;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

#[derive(thiserror::Error, Debug)]
pub enum TlsError {
    #[error("reading {what} {path}: {message}")]
    File { what: &'static str, path: PathBuf, message: String },
    #[error("{what} {path} holds no {expected}")]
    Empty { what: &'static str, path: PathBuf, expected: &'static str },
    #[error("the TLS settings do not load: {0}")]
    Config(String),
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    #[error("TLS handshake not finished within {0:?}")]
    Timeout(Duration),
}

/// Whether clients must present a certificate (Kafka's `ssl.client.auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// Asked for, verified when presented; clients without one are anonymous.
    Requested,
    /// Every client must present a certificate the CA signed.
    Required,
}

/// Where the TLS material is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The host's certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates client certificates are verified against (PEM).
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// What a listener hands every handshake, reloaded when the files change.
pub struct Tls {
    files: TlsFiles,
    current: Mutex<Loaded>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.files.cert).finish_non_exhaustive()
    }
}

struct Loaded {
    acceptor: TlsAcceptor,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

/// How often the files are looked at, at most.
const RECHECK: Duration = Duration::from_secs(1);

impl Tls {
    /// Load the files (an error names the file and what is wrong with it, never its content).
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        crate::logs::warn_if_readable_by_others(&files.key, "the TLS private key");
        let stamps = stamps(&files);
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&files)?));
        Ok(Arc::new(Tls { files, current: Mutex::new(Loaded { acceptor, stamps, checked: Instant::now() }) }))
    }

    /// The acceptor for the next handshake: the files' current content, or what was loaded last
    /// if they changed into something that does not load.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut loaded = self.current.lock();
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            let now = stamps(&self.files);
            if now != loaded.stamps {
                loaded.stamps = now;
                match server_config(&self.files) {
                    Ok(config) => {
                        loaded.acceptor = TlsAcceptor::from(Arc::new(config));
                        tracing::info!(cert = %self.files.cert.display(), "reloaded the TLS certificate files");
                    }
                    Err(e) => {
                        tracing::error!("the changed TLS files are not used (the previous ones are): {e}")
                    }
                }
            }
        }
        loaded.acceptor.clone()
    }

    /// Run the server side of a handshake on `tcp` within `limit`; the stream and the principal
    /// of the client's certificate, if it presented one.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        limit: Duration,
    ) -> Result<(Stream, Option<String>), TlsError> {
        let acceptor = self.acceptor();
        let tls = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
            Err(_) => return Err(TlsError::Timeout(limit)),
            Ok(Err(e)) => return Err(TlsError::Handshake(e)),
            Ok(Ok(tls)) => tls,
        };
        let principal =
            tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|leaf| match subject_dn(
                leaf,
            ) {
                Some(dn) => format!("User:{dn}"),
                None => "User:ANONYMOUS".to_string(),
            });
        Ok((Stream::Tls(Box::new(tls)), principal))
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

fn file_error(what: &'static str, path: &Path) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError {
    move |e| TlsError::File { what, path: path.to_path_buf(), message: e.to_string() }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(file_error(what, path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error(what, path))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: path.to_path_buf(), expected: "PEM certificate" });
    }
    Ok(certs)
}

/// rustls's settings for `files`: ring, TLS 1.3 and 1.2 only.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = certificates("tls_cert_file", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            TlsError::Empty { what: "tls_key_file", path: files.key.clone(), expected: "PEM private key" }
        }
        e => file_error("tls_key_file", &files.key)(e),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (files.client_auth, &files.client_ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config("tls_client_auth needs tls_client_ca_file".into()));
        }
        (auth, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("tls_client_ca_file", ca)? {
                roots.add(cert).map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier =
                if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Config(format!("{} with {}: {e}", files.cert.display(), files.key.display()))
    })?;
    // Kafka and Pulsar clients speak their protocol directly, without ALPN.
    config.alpn_protocols.clear();
    Ok(config)
}

/// A client's settings (the admin CLI's): trust the CAs in `ca` (PEM), present `identity`
/// (certificate chain and key files) when given.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates("CA file", ca)? {
        roots.add(cert).map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certificates("certificate file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(file_error("key file", key))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| TlsError::Config(e.to_string()))
        }
    }
}

/// A connection as accepted: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The subject of an X.509 certificate (DER) as RFC 2253 writes it, the form Kafka's principals
/// take (Java's `X500Principal.getName()`): the last RDN first, `,` between RDNs, `+` within
/// one, known attribute keywords (CN, O, …) and other attributes as `OID=#hex`.
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    let (_, cert_body, _) = der(cert)?;
    let (_, tbs, _) = der(cert_body)?;
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    let (tag, _, after) = der(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = der(rest)?.2;
    }
    let (tag, name, _) = der(rest)?;
    if tag != 0x30 {
        return None;
    }
    let mut rdns = Vec::new();
    let mut set = name;
    while !set.is_empty() {
        let (tag, attrs, next) = der(set)?;
        if tag != 0x31 {
            return None;
        }
        let mut parts = Vec::new();
        let mut a = attrs;
        while !a.is_empty() {
            let (_, atv, next_atv) = der(a)?;
            let (oid_tag, oid, value_der) = der(atv)?;
            if oid_tag != 0x06 {
                return None;
            }
            let (value_tag, value, _) = der(value_der)?;
            let keyword = keyword(oid);
            let text = match (keyword, string_value(value_tag, value)) {
                (Some(k), Some(v)) => format!("{k}={}", escape(&v)),
                (k, _) => {
                    let whole = &value_der[..value_der.len() - der(value_der)?.2.len()];
                    let hex: String = whole.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{}=#{hex}", k.map_or_else(|| dotted(oid), str::to_string))
                }
            };
            parts.push(text);
            a = next_atv;
        }
        rdns.push(parts.join("+"));
        set = next;
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// One DER element: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// RFC 2253's keywords (those Java's RFC 2253 form writes by name).
fn keyword(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x09] => "STREET",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for b in oid {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// The text of a directory string, for the string types certificates use.
fn string_value(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1 when not UTF-8).
        0x0c | 0x13 | 0x16 => String::from_utf8(value.to_vec()).ok(),
        0x14 => Some(value.iter().map(|&b| b as char).collect()),
        // BMPString: UTF-16BE.
        0x1e if value.len().is_multiple_of(2) => {
            let units: Vec<u16> = value.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253's escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element with `tag` around `content`.
    fn el(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            let len = (content.len() as u32).to_be_bytes();
            let skip = len.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        el(0x30, &[el(0x06, oid), el(tag, value)].concat())
    }

    fn cert_with_subject(rdns: &[Vec<u8>]) -> Vec<u8> {
        let name = el(0x30, &rdns.concat());
        let tbs = [
            el(0xA0, &el(0x02, &[2])),
            el(0x02, &[1]),
            el(0x30, &el(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])),
            el(0x30, &el(0x31, &atv(&[0x55, 0x04, 0x03], 0x0c, b"issuer"))),
            el(0x30, &[el(0x17, b"250101000000Z"), el(0x17, b"350101000000Z")].concat()),
            name,
            el(0x30, &[0u8; 200]),
        ]
        .concat();
        el(0x30, &[el(0x30, &tbs), el(0x30, &[]), el(0x03, &[0])].concat())
    }

    #[test]
    fn subjects_read_as_rfc_2253_last_rdn_first() {
        let cert = cert_with_subject(&[
            el(0x31, &atv(&[0x55, 0x04, 0x06], 0x13, b"US")),
            el(0x31, &atv(&[0x55, 0x04, 0x0a], 0x0c, b"Acme, Inc.")),
            el(
                0x31,
                &[atv(&[0x55, 0x04, 0x0b], 0x0c, b"ops"), atv(&[0x55, 0x04, 0x03], 0x0c, b" #writer ")]
                    .concat(),
            ),
        ]);
        assert_eq!(subject_dn(&cert).unwrap(), r"OU=ops+CN=\ #writer\ ,O=Acme\, Inc.,C=US");
    }

    #[test]
    fn unknown_attributes_are_written_as_oid_and_hex() {
        // emailAddress 1.2.840.113549.1.9.1, an IA5String.
        let email = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        let cert = cert_with_subject(&[
            el(0x31, &atv(&email, 0x16, b"a@b")),
            el(0x31, &atv(&[0x55, 0x04, 0x03], 0x1e, &[0, b'x', 0, b'y'])),
        ]);
        assert_eq!(subject_dn(&cert).unwrap(), "CN=xy,1.2.840.113549.1.9.1=#1603614062");
    }

    #[test]
    fn malformed_certificates_have_no_subject() {
        let cert = cert_with_subject(&[el(0x31, &atv(&[0x55, 0x04, 0x03], 0x0c, b"x"))]);
        for cut in 0..cert.len() {
            // Never a panic; a truncated certificate is not read.
            let _ = subject_dn(&cert[..cut]);
        }
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_dn(&[]), None);
    }
}
