//! A small blocking client of the admin API, for `guise module ...` and the tests.

use super::http::percent_encode;
use crate::transform::{BindingSpec, TransformView};
use crate::wasm::{ModuleView, VersionView};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error("cannot reach the admin API at {addr} (is `guise serve` running there?): {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("talking to the admin API: {0}")]
    Io(#[from] std::io::Error),
    #[error("{message} (HTTP {status})")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from the admin API: {0}")]
    Protocol(String),
    #[error("TLS to the admin API: {0}")]
    Tls(String),
}

/// What a request is written to and read from: TCP, or TLS over it.
trait Duplex: Read + Write {}
impl<T: Read + Write> Duplex for T {}

pub struct AdminClient {
    addr: String,
    /// Deploys compile before they answer: give them time.
    timeout: Duration,
    /// Some: https (the host's `admin_tls`).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Sent as `Authorization: Bearer` (the host's `admin_tokens`).
    token: Option<String>,
}

impl AdminClient {
    pub fn new(addr: impl Into<String>) -> Self {
        AdminClient { addr: addr.into(), timeout: Duration::from_secs(300), tls: None, token: None }
    }

    /// Authenticate every request with this bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Talk TLS, trusting the CAs in `ca`, presenting `identity` (certificate and key files)
    /// when the host asks for client certificates.
    pub fn with_tls(mut self, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, ClientError> {
        let config =
            crate::net::tls::client_config(ca, identity).map_err(|e| ClientError::Tls(e.to_string()))?;
        self.tls = Some(Arc::new(config));
        Ok(self)
    }

    pub fn deploy(&self, name: &str, wasm: &[u8]) -> Result<VersionView, ClientError> {
        self.call("PUT", &format!("/modules/{name}"), wasm)
    }

    pub fn list(&self) -> Result<Vec<ModuleView>, ClientError> {
        self.call("GET", "/modules", &[])
    }

    pub fn show(&self, name: &str) -> Result<ModuleView, ClientError> {
        self.call("GET", &format!("/modules/{name}"), &[])
    }

    pub fn rollback(&self, name: &str, to: Option<u32>) -> Result<VersionView, ClientError> {
        let query = to.map(|v| format!("?to={v}")).unwrap_or_default();
        self.call("POST", &format!("/modules/{name}/rollback{query}"), &[])
    }

    /// Deploy `wasm` as the next version of `tenant`'s transform `name`, bound by `spec`.
    pub fn deploy_transform(
        &self,
        tenant: &str,
        name: &str,
        spec: &BindingSpec,
        wasm: &[u8],
    ) -> Result<TransformView, ClientError> {
        let mut query = Vec::new();
        let mut add = |k: &str, v: &str| query.push(format!("{k}={}", percent_encode(v)));
        spec.topics.iter().for_each(|t| add("topic", t));
        spec.output_topics.iter().for_each(|t| add("output-topic", t));
        add("policy", &spec.policy.to_string());
        spec.config.iter().for_each(|(k, v)| add("config", &format!("{k}={v}")));
        let path =
            format!("/transforms/{}/{}?{}", percent_encode(tenant), percent_encode(name), query.join("&"));
        self.call("PUT", &path, wasm)
    }

    /// Transforms of `tenant`, or of every tenant.
    pub fn list_transforms(&self, tenant: Option<&str>) -> Result<Vec<TransformView>, ClientError> {
        let path = tenant.map_or("/transforms".to_string(), |t| format!("/transforms/{}", percent_encode(t)));
        self.call("GET", &path, &[])
    }

    pub fn show_transform(&self, tenant: &str, name: &str) -> Result<TransformView, ClientError> {
        self.call("GET", &format!("/transforms/{}/{}", percent_encode(tenant), percent_encode(name)), &[])
    }

    pub fn rollback_transform(
        &self,
        tenant: &str,
        name: &str,
        to: Option<u32>,
    ) -> Result<TransformView, ClientError> {
        let query = to.map(|v| format!("?to={v}")).unwrap_or_default();
        let path = format!("/transforms/{}/{}/rollback{query}", percent_encode(tenant), percent_encode(name));
        self.call("POST", &path, &[])
    }

    pub fn delete_transform(&self, tenant: &str, name: &str) -> Result<(), ClientError> {
        let path = format!("/transforms/{}/{}", percent_encode(tenant), percent_encode(name));
        self.call::<serde_json::Value>("DELETE", &path, &[]).map(|_| ())
    }

    /// GET a text endpoint (`/metrics`, `/health`).
    pub fn text(&self, path: &str) -> Result<String, ClientError> {
        let (status, body) = self.request("GET", path, &[])?;
        if status != 200 {
            return Err(ClientError::Refused {
                status,
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        String::from_utf8(body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<T, ClientError> {
        let (status, body) = self.request(method, path, body)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(ClientError::Refused { status, message });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("{e}")))
    }

    /// One request on its own connection; the server closes it after the response.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
        let tcp = TcpStream::connect(&self.addr)
            .map_err(|source| ClientError::Connect { addr: self.addr.clone(), source })?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        let mut stream: Box<dyn Duplex> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
                let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| ClientError::Tls(format!("{host}: {e}")))?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        // With a body, ask first (Expect: 100-continue): the server may refuse on the headers
        // alone (too large, no such endpoint), and then the body is never sent.
        let expect = if body.is_empty() { "" } else { "expect: 100-continue\r\n" };
        let auth = self.token.as_ref().map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n{expect}{auth}connection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        let mut raw = Vec::new();
        if !body.is_empty() {
            let interim = read_head(&mut *stream, &mut raw)?;
            if raw[..interim].starts_with(b"HTTP/1.1 100") {
                raw.drain(..interim + 4);
                stream.write_all(body)?;
            }
        }
        stream.read_to_end(&mut raw)?;
        let split =
            find_head_end(&raw).ok_or_else(|| ClientError::Protocol("no HTTP response head".into()))?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol(format!("bad status line in {head:?}")))?;
        Ok((status, raw[split + 4..].to_vec()))
    }
}

fn find_head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Read until a response head is complete; returns where it ends.
fn read_head(stream: &mut dyn Duplex, raw: &mut Vec<u8>) -> Result<usize, ClientError> {
    loop {
        if let Some(end) = find_head_end(raw) {
            return Ok(end);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk)? {
            0 => return Err(ClientError::Protocol("the connection closed before a response".into())),
            n => raw.extend_from_slice(&chunk[..n]),
        }
    }
}
