//! Pulsar's admin REST API (`pulsar_admin_url`), for what the binary protocol cannot do:
//! partitioned-topic metadata, so that Kafka topic `t` with N partitions is Pulsar's
//! partitioned topic `t` (partitions `t-partition-0..N-1`, which the backend writes) and Pulsar
//! tools, policies and consumers see one topic; deleting it; and creating the namespaces the
//! host writes to.
//!
//! A small HTTP/1.0 client (one exchange per connection, answers end with the connection, so
//! never chunked) that follows the brokers' redirects to a topic's owner. `http://` only: TLS to
//! the admin API belongs with the security work.

use crate::storage::StorageError;
use crate::storage::TopicName;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one admin call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed (a topic call lands on any broker and is sent on to the owner).
const MAX_REDIRECTS: usize = 4;

#[derive(Clone)]
pub struct PulsarAdmin {
    /// `HOST:PORT` of the admin API.
    authority: String,
    token: Option<String>,
}

/// What the admin API answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl PulsarAdmin {
    /// `url` is `http://HOST:PORT` (a trailing `/` is allowed).
    pub fn new(url: &str, token: Option<String>) -> Result<PulsarAdmin, StorageError> {
        let authority = parse_http_url(url)
            .ok_or_else(|| {
                StorageError::InvalidConfig(format!(
                    "pulsar_admin_url '{url}' is not http://HOST:PORT (https is not supported yet)"
                ))
            })?
            .0;
        Ok(PulsarAdmin { authority, token })
    }

    /// Make sure `tenant/namespace` exists (created with the cluster's defaults when missing).
    pub async fn ensure_namespace(&self, tenant: &str, namespace: &str) -> Result<(), StorageError> {
        let made =
            self.call("PUT", &format!("/admin/v2/namespaces/{tenant}/{namespace}"), Some("{}")).await?;
        match made.status {
            200..=299 => {
                tracing::info!(namespace = %format!("{tenant}/{namespace}"), "created the Pulsar namespace");
                Ok(())
            }
            409 => Ok(()),
            404 => Err(StorageError::InvalidConfig(format!(
                "Pulsar has no tenant '{tenant}' (create it with pulsar-admin tenants create): {}",
                made.body.trim()
            ))),
            _ => Err(refused("creating namespace", &format!("{tenant}/{namespace}"), &made)),
        }
    }

    /// Make Pulsar's partitioned topic `name` have `partitions` partitions: create its metadata,
    /// or grow it. More partitions than asked (left by an earlier topic of that name) are kept.
    pub async fn ensure_partitioned(&self, name: &TopicName, partitions: i32) -> Result<(), StorageError> {
        let path = partitions_path(name);
        let made = self.call("PUT", &path, Some(&partitions.to_string())).await?;
        match made.status {
            200..=299 => return Ok(()),
            409 => {}
            404 => {
                self.ensure_namespace(&name.tenant, &name.namespace).await?;
                let made = self.call("PUT", &path, Some(&partitions.to_string())).await?;
                return match made.status {
                    200..=299 => Ok(()),
                    _ => Err(refused("creating partitioned topic", &topic_url(name), &made)),
                };
            }
            _ => return Err(refused("creating partitioned topic", &topic_url(name), &made)),
        }
        // It exists: grow it if it has fewer.
        let got = self.call("GET", &path, None).await?;
        let have = serde_json::from_str::<serde_json::Value>(&got.body)
            .ok()
            .and_then(|v| v.get("partitions").and_then(|p| p.as_i64()))
            .ok_or_else(|| refused("reading partitioned topic", &topic_url(name), &got))?;
        if have >= i64::from(partitions) {
            return Ok(());
        }
        let grown = self.call("POST", &path, Some(&partitions.to_string())).await?;
        match grown.status {
            200..=299 => Ok(()),
            _ => Err(refused("adding partitions to", &topic_url(name), &grown)),
        }
    }

    /// Delete Pulsar's partitioned topic `name` with its partitions and their subscriptions.
    /// A topic Pulsar does not have is fine.
    pub async fn delete_partitioned(&self, name: &TopicName) -> Result<(), StorageError> {
        let path = format!("{}?force=true", partitions_path(name));
        let gone = self.call("DELETE", &path, None).await?;
        match gone.status {
            200..=299 | 404 => Ok(()),
            _ => Err(refused("deleting", &topic_url(name), &gone)),
        }
    }

    /// One call, following redirects.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Answer, StorageError> {
        let (mut authority, mut path) = (self.authority.clone(), path.to_string());
        for _ in 0..=MAX_REDIRECTS {
            let (answer, location) =
                tokio::time::timeout(CALL_TIMEOUT, self.exchange(&authority, method, &path, body))
                    .await
                    .map_err(|_| {
                    StorageError::Unavailable(format!(
                        "Pulsar admin API at {authority}: no answer to {method} {path}"
                    ))
                })??;
            match (answer.status, location) {
                (301 | 302 | 307 | 308, Some(location)) => {
                    let (a, p) = parse_http_url(&location).ok_or_else(|| {
                        StorageError::Unavailable(format!("Pulsar admin API redirected to '{location}'"))
                    })?;
                    (authority, path) = (a, p);
                }
                _ => return Ok(answer),
            }
        }
        Err(StorageError::Unavailable(format!("Pulsar admin API: too many redirects for {method} {path}")))
    }

    async fn exchange(
        &self,
        authority: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(Answer, Option<String>), StorageError> {
        let unavailable =
            |e: std::io::Error| StorageError::Unavailable(format!("Pulsar admin API at {authority}: {e}"));
        let mut stream = tokio::net::TcpStream::connect(authority).await.map_err(unavailable)?;
        let body = body.unwrap_or("");
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.map_err(unavailable)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(unavailable)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| {
            StorageError::Unavailable(format!("Pulsar admin API at {authority}: not an HTTP answer"))
        })?;
        let location = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("location").then(|| v.trim().to_string())
        });
        Ok((Answer { status, body: rest.to_string() }, location))
    }
}

fn topic_url(name: &TopicName) -> String {
    format!("persistent://{}/{}/{}", name.tenant, name.namespace, name.topic)
}

fn partitions_path(name: &TopicName) -> String {
    format!("/admin/v2/persistent/{}/{}/{}/partitions", name.tenant, name.namespace, name.topic)
}

/// `http://HOST:PORT/PATH` into `HOST:PORT` (port 80 when missing) and `/PATH`.
fn parse_http_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Some((authority, path.to_string()))
}

/// An answer that is not what was asked for; 5xx and 429 are retriable, others are not.
fn refused(what: &str, target: &str, answer: &Answer) -> StorageError {
    let reason = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| answer.body.trim().chars().take(200).collect());
    let message = format!("Pulsar admin API: {what} {target}: HTTP {}: {reason}", answer.status);
    if answer.status >= 500 || answer.status == 429 {
        StorageError::Unavailable(message)
    } else {
        StorageError::InvalidConfig(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(parse_http_url("http://b:8080"), Some(("b:8080".into(), "/".into())));
        assert_eq!(parse_http_url("http://b/x?y=1"), Some(("b:80".into(), "/x?y=1".into())));
        assert_eq!(parse_http_url("https://b:8443"), None);
        assert_eq!(parse_http_url("http:///x"), None);
        assert!(PulsarAdmin::new("ftp://x", None).is_err());
    }
}
