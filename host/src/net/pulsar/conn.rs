//! One Pulsar client connection: frames in, commands handled in order, frames out through a
//! writer task fed by this connection and by the dispatchers of its consumers.

use super::convert::{self, kafka_batch_of_send};
use super::producers::{Attach, PartitionKey};
use super::subs::{AttachError, ConsumerSpec, Start, Subscription};
use super::{Endpoint, Outbox, PROTOCOL_VERSION, TopicError, command, storage_error};
use crate::pulsar::frame::{Frame, FrameDecoder};
use crate::pulsar::proto::base_command::Type;
use crate::pulsar::proto::command_ack::AckType;
use crate::pulsar::proto::command_lookup_topic_response::LookupType;
use crate::pulsar::proto::command_partitioned_topic_metadata_response::LookupType as MetaLookupType;
use crate::pulsar::proto::command_subscribe::{InitialPosition, SubType};
use crate::pulsar::proto::*;
use crate::record::batch::BatchHeader;
use crate::storage::{AppendInfo, StorageError};
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How a failed CONNECT authentication starts its reason (the log line is throttled).
const AUTH_FAILED: &str = "authentication failed";
/// What a broker's AUTH_CHALLENGE carries to ask for fresh credentials (Pulsar's
/// `AuthData.REFRESH_AUTH_DATA`).
const REFRESH_AUTH_DATA: &[u8] = b"PulsarAuthRefresh";
/// How long a client that supports refreshing has to answer the challenge sent when its token
/// expires, before its connection is closed.
const REFRESH_GRACE: Duration = Duration::from_secs(10);
/// The longest a producer over its quota holds its connection at once (Pulsar's own publish
/// rate limiter works in ticks of a second).
const MAX_HOLD: Duration = Duration::from_secs(1);

/// A token-authenticated connection: its principal, when its token expires, whether its client
/// can refresh it (CONNECT's `supports_auth_refresh`), and, once challenged, until when it may
/// answer.
struct Authenticated {
    principal: String,
    /// The token's `exp` plus the clock skew allowed.
    expires: SystemTime,
    refresh: bool,
    challenged: Option<tokio::time::Instant>,
}

impl Authenticated {
    /// When the connection's credentials next need attention.
    fn deadline(&self) -> tokio::time::Instant {
        self.challenged.unwrap_or_else(|| {
            let left = self.expires.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::Instant::now() + left
        })
    }
}
/// Failed authentications' log lines, shared by every connection.
static AUTH_FAILURES: crate::logs::Throttle = crate::logs::Throttle::new(std::time::Duration::from_secs(1));

/// A schema version, for producers that declare a schema (schemas are not stored or checked).
const SCHEMA_VERSION: [u8; 8] = [0; 8];

struct Producer {
    partition: PartitionKey,
    /// The name the client gave it, if any: its client id for the quotas.
    name: Option<String>,
}

struct Conn {
    ep: Arc<Endpoint>,
    id: u64,
    peer: SocketAddr,
    out: Outbox,
    connected: bool,
    /// With token authentication: the one tenant the principal's token names, if any.
    only: Option<crate::tenant::TenantId>,
    /// With token authentication: who the token named, and what to do when it expires.
    auth: Option<Authenticated>,
    /// Over a produce quota: read nothing more from the client until then.
    hold: Option<tokio::time::Instant>,
    producers: HashMap<u64, Producer>,
    consumers: HashMap<u64, Arc<Subscription>>,
}

pub async fn serve(
    ep: Arc<Endpoint>,
    stream: crate::net::tls::Stream,
    id: u64,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out, mut rx) = Outbox::new();
    let writer = tokio::spawn(async move {
        // Small frames queued together go out in one write; a large one (a MESSAGE with a
        // whole batch) is written from its own buffer, not copied.
        const LARGE: usize = 64 * 1024;
        let (mut buf, mut next) = (Vec::new(), None);
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => match rx.recv().await {
                    Some(f) => f,
                    None => break,
                },
            };
            let bytes: &[u8] = if frame.len() >= LARGE {
                &frame
            } else {
                buf.clear();
                buf.extend_from_slice(&frame);
                while buf.len() < 256 * 1024 {
                    match rx.try_recv() {
                        Some(more) if more.len() >= LARGE => {
                            next = Some(more);
                            break;
                        }
                        Some(more) => buf.extend_from_slice(&more),
                        None => break,
                    }
                }
                &buf
            };
            if wr.write_all(bytes).await.is_err() {
                break;
            }
            rx.written(bytes.len());
        }
    });
    let max_frame = ep.cfg.max_message_size.saturating_add(64 * 1024);
    let decoder = FrameDecoder::new(max_frame);
    let mut conn = Conn {
        ep,
        id,
        peer,
        out,
        connected: false,
        only: None,
        auth: None,
        hold: None,
        producers: HashMap::new(),
        consumers: HashMap::new(),
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let handled = conn.handle(frame).await;
                    if let Some(until) = conn.hold.take() {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => {}
                            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break 'read },
                        }
                    }
                    if let Err(why) = handled {
                        // Failed logins may come by the thousand: at most a line a second.
                        if !why.starts_with(AUTH_FAILED) {
                            tracing::warn!(conn = id, %peer, "closing the Pulsar connection: {why}");
                        } else if let Some(left_out) = AUTH_FAILURES.hit() {
                            tracing::warn!(conn = id, %peer, left_out, "closing the Pulsar connection: {why}");
                        }
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(conn = id, %peer, "closing the Pulsar connection, bad frame: {e}");
                    break 'read;
                }
            }
        }
        let missing = decoder.missing(&buf).max(4096);
        buf.reserve(missing);
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(conn = id, %peer, "read failed: {e}");
                    break;
                }
            },
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
            _ = sleep_until_some(conn.auth.as_ref().map(Authenticated::deadline)) => {
                if let Err(why) = conn.token_expired() {
                    tracing::info!(conn = id, %peer, "closing the Pulsar connection: {why}");
                    break;
                }
            }
        }
    }
    conn.close();
    drop(conn);
    let _ = writer.await;
}

/// Sleep until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    fn send(&self, kind: Type, cmd: BaseCommand) {
        self.out.send(command(kind, cmd));
    }

    fn error(&self, request_id: u64, e: TopicError) {
        tracing::debug!(conn = self.id, request_id, "error {:?}: {}", e.error, e.message);
        self.send(
            Type::Error,
            BaseCommand {
                error: Some(CommandError { request_id, error: e.error as i32, message: e.message }),
                ..Default::default()
            },
        );
    }

    /// Whether this connection may reach topic `name` (an authenticated principal with a
    /// tenant reaches only that tenant's topics).
    fn reaches(&self, name: &str) -> Result<(), TopicError> {
        let t = self.ep.parse(name)?;
        self.reaches_tenant(&t.base.tenant)
    }

    fn reaches_tenant(&self, tenant: &str) -> Result<(), TopicError> {
        match &self.only {
            Some(only) if only.as_str() != tenant => Err(TopicError {
                error: crate::pulsar::proto::ServerError::AuthorizationError,
                message: format!("the principal's tenant is {only}, not {tenant}"),
            }),
            _ => Ok(()),
        }
    }

    fn success(&self, request_id: u64) {
        self.send(
            Type::Success,
            BaseCommand { success: Some(CommandSuccess { request_id, schema: None }), ..Default::default() },
        );
    }

    /// Handle one command; Err closes the connection.
    async fn handle(&mut self, frame: Frame) -> Result<(), String> {
        let Some(kind) = frame.command_type() else {
            return Err(format!("unknown command type {}", frame.command.r#type));
        };
        let cmd = frame.command;
        if !self.connected && kind != Type::Connect {
            return Err(format!("{kind:?} before CONNECT"));
        }
        let missing = || format!("{kind:?} without its body");
        match kind {
            Type::Connect => {
                let c = cmd.connect.ok_or_else(missing)?;
                if self.connected {
                    return Err("a second CONNECT".into());
                }
                if let Some(auth) = self.ep.cfg.auth.clone() {
                    let token = match c.auth_method_name.as_deref() {
                        Some("token") => c.auth_data.as_deref().and_then(|d| std::str::from_utf8(d).ok()),
                        _ => None,
                    };
                    let checked = match token.map(|t| t.strip_prefix("token:").unwrap_or(t)) {
                        None => Err("no token (auth method \"token\") in CONNECT".to_string()),
                        Some(t) => auth.validate(t, std::time::SystemTime::now()),
                    };
                    match checked {
                        Ok(valid) => {
                            let principal = format!("User:{}", valid.name);
                            self.auth = Some(Authenticated {
                                principal: principal.clone(),
                                // As long as a CONNECT with it would be accepted.
                                expires: valid.expires + auth.clock_skew,
                                refresh: c.feature_flags.as_ref().and_then(|f| f.supports_auth_refresh)
                                    == Some(true),
                                challenged: None,
                            });
                            // A principal that names no tenant reaches the endpoint's default one.
                            let mapped = self
                                .ep
                                .cfg
                                .principals
                                .tenant_of(&principal, crate::net::principals::Via::Sasl);
                            self.only = Some(mapped.unwrap_or_else(|| self.ep.cfg.tenant.clone()));
                            tracing::debug!(conn = self.id, principal, tenant = ?self.only, "Pulsar client authenticated");
                        }
                        Err(why) => {
                            self.error(
                                u64::MAX,
                                TopicError {
                                    error: crate::pulsar::proto::ServerError::AuthenticationError,
                                    message: format!("Unable to authenticate: {why}"),
                                },
                            );
                            return Err(format!("{AUTH_FAILED}: {why}"));
                        }
                    }
                }
                let version = c.protocol_version.unwrap_or(0).min(PROTOCOL_VERSION);
                tracing::debug!(conn = self.id, peer = %self.peer, client = %c.client_version, version, "Pulsar client connected");
                self.connected = true;
                self.send(
                    Type::Connected,
                    BaseCommand {
                        connected: Some(CommandConnected {
                            server_version: concat!("Guise ", env!("CARGO_PKG_VERSION")).to_string(),
                            protocol_version: Some(version),
                            max_message_size: Some(
                                i32::try_from(self.ep.cfg.max_message_size).unwrap_or(i32::MAX),
                            ),
                        }),
                        ..Default::default()
                    },
                );
            }
            Type::Ping => {
                self.send(Type::Pong, BaseCommand { pong: Some(CommandPong {}), ..Default::default() })
            }
            Type::Pong => {}
            Type::AuthResponse => {
                let r = cmd.auth_response.ok_or_else(missing)?;
                self.refreshed(r.response.and_then(|d| d.auth_data))?;
            }
            Type::PartitionedMetadata => {
                let m = cmd.partition_metadata.ok_or_else(missing)?;
                let r = match self.reaches(&m.topic) {
                    Ok(()) => self.ep.partitions_of(&m.topic).await,
                    Err(e) => Err(e),
                };
                let response = match r {
                    Ok(partitions) => CommandPartitionedTopicMetadataResponse {
                        partitions: Some(partitions),
                        request_id: m.request_id,
                        response: Some(MetaLookupType::Success as i32),
                        ..Default::default()
                    },
                    Err(e) => CommandPartitionedTopicMetadataResponse {
                        request_id: m.request_id,
                        response: Some(MetaLookupType::Failed as i32),
                        error: Some(e.error as i32),
                        message: Some(e.message),
                        ..Default::default()
                    },
                };
                self.send(
                    Type::PartitionedMetadataResponse,
                    BaseCommand { partition_metadata_response: Some(response), ..Default::default() },
                );
            }
            Type::Lookup => {
                let l = cmd.lookup_topic.ok_or_else(missing)?;
                let response = match self.reaches(&l.topic).and_then(|()| self.ep.parse(&l.topic)) {
                    Ok(_) => CommandLookupTopicResponse {
                        broker_service_url: Some(self.ep.cfg.service_url.clone()),
                        broker_service_url_tls: self.ep.cfg.tls_service_url.clone(),
                        response: Some(LookupType::Connect as i32),
                        request_id: l.request_id,
                        authoritative: Some(true),
                        ..Default::default()
                    },
                    Err(e) => CommandLookupTopicResponse {
                        response: Some(LookupType::Failed as i32),
                        request_id: l.request_id,
                        error: Some(e.error as i32),
                        message: Some(e.message),
                        ..Default::default()
                    },
                };
                self.send(
                    Type::LookupResponse,
                    BaseCommand { lookup_topic_response: Some(response), ..Default::default() },
                );
            }
            Type::Producer => self.producer(cmd.producer.ok_or_else(missing)?).await,
            Type::Send => self.produce(cmd.send.ok_or_else(missing)?, frame.payload).await,
            Type::CloseProducer => {
                let c = cmd.close_producer.ok_or_else(missing)?;
                if let Some(p) = self.producers.remove(&c.producer_id) {
                    self.ep.producers.detach(&p.partition, self.id, c.producer_id);
                }
                self.success(c.request_id);
            }
            Type::Subscribe => self.subscribe(cmd.subscribe.ok_or_else(missing)?).await,
            Type::Flow => {
                let f = cmd.flow.ok_or_else(missing)?;
                if let Some(sub) = self.consumers.get(&f.consumer_id) {
                    sub.flow(self.id, f.consumer_id, f.message_permits);
                }
            }
            Type::Ack => {
                let a = cmd.ack.ok_or_else(missing)?;
                if let Some(sub) = self.consumers.get(&a.consumer_id) {
                    let kind = AckType::try_from(a.ack_type).unwrap_or(AckType::Individual);
                    sub.ack(kind, &a.message_id);
                }
                if let Some(request_id) = a.request_id {
                    self.send(
                        Type::AckResponse,
                        BaseCommand {
                            ack_response: Some(CommandAckResponse {
                                consumer_id: a.consumer_id,
                                request_id: Some(request_id),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    );
                }
            }
            Type::RedeliverUnacknowledgedMessages => {
                let r = cmd.redeliver_unacknowledged_messages.ok_or_else(missing)?;
                if let Some(sub) = self.consumers.get(&r.consumer_id) {
                    sub.redeliver(self.id, r.consumer_id, &r.message_ids);
                }
            }
            Type::Seek => self.seek(cmd.seek.ok_or_else(missing)?).await,
            Type::GetLastMessageId => {
                self.last_message_id(cmd.get_last_message_id.ok_or_else(missing)?).await
            }
            Type::CloseConsumer => {
                let c = cmd.close_consumer.ok_or_else(missing)?;
                if let Some(sub) = self.consumers.remove(&c.consumer_id) {
                    self.ep.subs.detach(&sub, self.id, c.consumer_id);
                }
                self.success(c.request_id);
            }
            Type::Unsubscribe => {
                let u = cmd.unsubscribe.ok_or_else(missing)?;
                let Some(sub) = self.consumers.get(&u.consumer_id).cloned() else {
                    self.error(u.request_id, TopicError::no_consumer());
                    return Ok(());
                };
                match self.ep.subs.unsubscribe(&sub, self.id, u.consumer_id).await {
                    Ok(()) => {
                        self.consumers.remove(&u.consumer_id);
                        self.success(u.request_id);
                    }
                    Err(e) => self.error(u.request_id, attach_error(e)),
                }
            }
            Type::GetTopicsOfNamespace => {
                let g = cmd.get_topics_of_namespace.ok_or_else(missing)?;
                let (tenant, ns) = g.namespace.split_once('/').unwrap_or((&self.ep.cfg.tenant, &g.namespace));
                if let Err(e) = self.ep.serves(tenant).and_then(|()| self.reaches_tenant(tenant)) {
                    self.error(g.request_id, e);
                    return Ok(());
                }
                let mut topics = Vec::new();
                for meta in self.ep.log.topics(tenant, ns) {
                    if meta.name.topic.starts_with("__") {
                        continue;
                    }
                    for p in 0..meta.partitions {
                        topics.push(crate::pulsar::topic::pulsar_name(&meta.name, Some(p)));
                    }
                }
                self.send(
                    Type::GetTopicsOfNamespaceResponse,
                    BaseCommand {
                        get_topics_of_namespace_response: Some(CommandGetTopicsOfNamespaceResponse {
                            request_id: g.request_id,
                            topics,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                );
            }
            Type::GetSchema => {
                let g = cmd.get_schema.ok_or_else(missing)?;
                self.send(
                    Type::GetSchemaResponse,
                    BaseCommand {
                        get_schema_response: Some(CommandGetSchemaResponse {
                            request_id: g.request_id,
                            error_code: Some(ServerError::TopicNotFound as i32),
                            error_message: Some("schemas are not stored".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                );
            }
            Type::GetOrCreateSchema => {
                let g = cmd.get_or_create_schema.ok_or_else(missing)?;
                self.send(
                    Type::GetOrCreateSchemaResponse,
                    BaseCommand {
                        get_or_create_schema_response: Some(CommandGetOrCreateSchemaResponse {
                            request_id: g.request_id,
                            schema_version: Some(SCHEMA_VERSION.to_vec()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                );
            }
            other => {
                tracing::warn!(conn = self.id, peer = %self.peer, "unsupported Pulsar command {other:?}: ignored");
            }
        }
        Ok(())
    }

    async fn producer(&mut self, p: CommandProducer) {
        if let Err(e) = self.reaches(&p.topic) {
            return self.error(p.request_id, e);
        }
        let partition = match self.ep.partition_of(&p.topic).await {
            Ok(partition) => partition,
            Err(e) => return self.error(p.request_id, e),
        };
        let name = p.producer_name.clone().unwrap_or_else(|| format!("guise-{}-{}", self.id, p.producer_id));
        let success = |ready: bool, epoch: Option<u64>| BaseCommand {
            producer_success: Some(CommandProducerSuccess {
                request_id: p.request_id,
                producer_name: name.clone(),
                last_sequence_id: Some(-1),
                schema_version: p.schema.as_ref().map(|_| SCHEMA_VERSION.to_vec()),
                topic_epoch: epoch,
                producer_ready: Some(ready),
            }),
            ..Default::default()
        };
        if let Some(existing) = self.producers.get(&p.producer_id) {
            if existing.partition == partition
                && self.ep.producers.attached(&partition, self.id, p.producer_id)
            {
                // A client that did not see our answer asks again.
                return self.send(Type::ProducerSuccess, success(true, None));
            }
            // Fenced or moved: it attaches again below.
            let old = self.producers.remove(&p.producer_id).expect("present").partition;
            self.ep.producers.detach(&old, self.id, p.producer_id);
        }
        let mode = p
            .producer_access_mode
            .and_then(|m| ProducerAccessMode::try_from(m).ok())
            .unwrap_or(ProducerAccessMode::Shared);
        match self.ep.producers.attach(
            &partition,
            self.id,
            p.producer_id,
            mode,
            p.topic_epoch,
            p.request_id,
            &name,
            &self.out,
        ) {
            Attach::Ready(epoch) => {
                tracing::debug!(conn = self.id, producer = p.producer_id, topic = %partition.0, partition = partition.1, ?mode, "producer ready");
                self.producers.insert(p.producer_id, Producer { partition, name: p.producer_name.clone() });
                self.send(Type::ProducerSuccess, success(true, Some(epoch)));
            }
            Attach::Waiting => {
                self.producers.insert(p.producer_id, Producer { partition, name: p.producer_name.clone() });
                self.send(Type::ProducerSuccess, success(false, None));
            }
            Attach::Fenced(why) => self.error(
                p.request_id,
                TopicError { error: ServerError::ProducerFenced, message: format!("{}: {why}", p.topic) },
            ),
            Attach::Busy(why) => self.error(
                p.request_id,
                TopicError { error: ServerError::ProducerBusy, message: format!("{}: {why}", p.topic) },
            ),
        }
    }

    fn send_error(&self, s: &CommandSend, error: ServerError, message: String) {
        tracing::debug!(
            conn = self.id,
            producer = s.producer_id,
            sequence = s.sequence_id,
            "SEND refused ({error:?}): {message}"
        );
        self.send(
            Type::SendError,
            BaseCommand {
                send_error: Some(CommandSendError {
                    producer_id: s.producer_id,
                    sequence_id: s.sequence_id,
                    error: error as i32,
                    message,
                }),
                ..Default::default()
            },
        );
    }

    async fn produce(&mut self, s: CommandSend, payload: Option<crate::pulsar::frame::Payload>) {
        let Some(producer) = self.producers.get(&s.producer_id) else {
            return self.send_error(
                &s,
                ServerError::ProducerFenced,
                "no such producer on this connection".into(),
            );
        };
        let partition = producer.partition.clone();
        if !self.ep.producers.attached(&partition, self.id, s.producer_id) {
            return self.send_error(
                &s,
                ServerError::ProducerFenced,
                "the producer was fenced or is not ready".into(),
            );
        }
        let Some(payload) = payload else {
            return self.send_error(&s, ServerError::UnknownError, "SEND without a message".into());
        };
        if !payload.checksum_ok {
            return self.send_error(
                &s,
                ServerError::ChecksumError,
                "the message's CRC32C does not match".into(),
            );
        }
        let bytes = payload.data.len();
        let max = self.ep.cfg.max_message_size as usize * 4;
        let batch = match kafka_batch_of_send(&payload.metadata, payload.data, max) {
            Ok(b) => b,
            Err(e) => {
                return self.send_error(
                    &s,
                    ServerError::ChecksumError,
                    format!("the message cannot be read: {e}"),
                );
            }
        };
        let (topic, p) = (&partition.0, partition.1);
        // A tenant with quotas (read from its topic on first use) has its transform's time
        // charged to the SEND, as a Kafka produce's is.
        let tenant = &topic.tenant;
        self.ep.cfg.quotas.load(tenant).await;
        let appended: Result<AppendInfo, StorageError> = if self.ep.cfg.quotas.unlimited(tenant) {
            self.ep.log.append(topic, p, batch.into()).await
        } else {
            let (appended, took) =
                crate::wasm::charged_within(self.ep.log.append(topic, p, batch.into())).await;
            let name = self.producers.get(&s.producer_id).and_then(|p| p.name.as_deref());
            self.hold = self.count_produce(tenant, name.unwrap_or(""), bytes, took);
            appended
        };
        match appended {
            Ok(info) => self.send(
                Type::SendReceipt,
                BaseCommand {
                    send_receipt: Some(CommandSendReceipt {
                        producer_id: s.producer_id,
                        sequence_id: s.sequence_id,
                        message_id: Some(convert::message_id(info.base_offset, -1)),
                        highest_sequence_id: s.highest_sequence_id,
                    }),
                    ..Default::default()
                },
            ),
            Err(e) => {
                tracing::warn!(conn = self.id, topic = %topic, partition = p, "Pulsar SEND failed: {e}");
                let e = storage_error(e);
                self.send_error(&s, e.error, e.message);
            }
        }
    }

    async fn subscribe(&mut self, s: CommandSubscribe) {
        if let Err(e) = self.reaches(&s.topic) {
            return self.error(s.request_id, e);
        }
        let partition = match self.ep.partition_of(&s.topic).await {
            Ok(partition) => partition,
            Err(e) => return self.error(s.request_id, e),
        };
        if let Some(existing) = self.consumers.get(&s.consumer_id).cloned() {
            let same = existing.key.0 == partition.0
                && existing.key.1 == partition.1
                && existing.key.2 == s.subscription;
            if same && existing.has_consumer(self.id, s.consumer_id) {
                // A client that did not see our answer asks again.
                return self.success(s.request_id);
            }
            // Closed by a seek or a deleted topic, or the id reused: it attaches again below.
            self.consumers.remove(&s.consumer_id);
            self.ep.subs.detach(&existing, self.id, s.consumer_id);
        }
        let kind = SubType::try_from(s.sub_type).unwrap_or(SubType::Exclusive);
        let start = match &s.start_message_id {
            Some(id) => start_of(id),
            None if s.initial_position == Some(InitialPosition::Earliest as i32) => Start::Earliest,
            None => Start::Latest,
        };
        let spec = ConsumerSpec {
            conn: self.id,
            id: s.consumer_id,
            name: s.consumer_name.clone().unwrap_or_default(),
            priority: s.priority_level.unwrap_or(0),
            out: self.out.clone(),
        };
        let key = (partition.0, partition.1, s.subscription.clone());
        let durable = s.durable.unwrap_or(true);
        let r = self.ep.subs.attach(key, kind, durable, start, spec).await;
        match r {
            Ok(sub) => {
                tracing::debug!(conn = self.id, consumer = s.consumer_id, topic = %s.topic, subscription = %s.subscription, ?kind, durable, "consumer subscribed");
                self.consumers.insert(s.consumer_id, sub);
                self.success(s.request_id);
            }
            Err(e) => self.error(s.request_id, attach_error(e)),
        }
    }

    async fn seek(&mut self, s: CommandSeek) {
        let Some(sub) = self.consumers.get(&s.consumer_id).cloned() else {
            return self.error(s.request_id, TopicError::no_consumer());
        };
        let (topic, partition, _) = &sub.key;
        let target = match (&s.message_id, s.message_publish_time) {
            (Some(id), _) => match start_of(id) {
                Start::Earliest => Ok(i64::MIN),
                Start::Latest => Ok(i64::MAX),
                Start::Offset(o) => Ok(o),
            },
            (None, Some(time)) => {
                let ts = i64::try_from(time).unwrap_or(i64::MAX);
                match self.ep.log.offset_for_timestamp(topic, *partition, ts).await {
                    Ok(Some((o, _))) => Ok(o),
                    Ok(None) => Ok(i64::MAX),
                    Err(e) => Err(e),
                }
            }
            (None, None) => {
                return self.error(
                    s.request_id,
                    TopicError { error: ServerError::UnknownError, message: "SEEK without a target".into() },
                );
            }
        };
        let r = match target {
            Ok(o) => sub.seek(o).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                self.success(s.request_id);
                // The seek closed the subscription's consumers (they come back with a SUBSCRIBE).
                let id = self.id;
                self.consumers.retain(|cid, sub| sub.has_consumer(id, *cid));
            }
            Err(e) => self.error(s.request_id, storage_error(e)),
        }
    }

    async fn last_message_id(&self, g: CommandGetLastMessageId) {
        let Some(sub) = self.consumers.get(&g.consumer_id) else {
            return self.error(g.request_id, TopicError::no_consumer());
        };
        let (topic, partition, _) = &sub.key;
        let r = async {
            let (start, hw) = self.ep.log.offsets(topic, *partition).await?;
            let none = MessageIdData { ledger_id: u64::MAX, entry_id: u64::MAX, ..Default::default() };
            if hw <= start {
                return Ok(none);
            }
            let read = self.ep.log.read(topic, *partition, hw - 1, 1, true).await?;
            let Some(bytes) = read.records else { return Ok(none) };
            let header = BatchHeader::parse(&bytes)?;
            let index = if header.records_count > 1 { header.records_count - 1 } else { -1 };
            Ok::<MessageIdData, StorageError>(convert::message_id(header.base_offset, index))
        }
        .await;
        match r {
            Ok(last) => {
                let md = sub.mark_delete();
                self.send(
                    Type::GetLastMessageIdResponse,
                    BaseCommand {
                        get_last_message_id_response: Some(CommandGetLastMessageIdResponse {
                            last_message_id: last,
                            request_id: g.request_id,
                            consumer_mark_delete_position: (md > 0).then(|| convert::message_id(md - 1, -1)),
                        }),
                        ..Default::default()
                    },
                );
            }
            Err(e) => self.error(g.request_id, storage_error(e)),
        }
    }

    /// Count a SEND of `bytes` to `tenant`'s topic, whose transform took `took`, against the
    /// tenant's quotas (its ceiling, and a client quota on the principal or the name the client
    /// gave its producer): the bytes as produce bytes, the time as request time. Answer until
    /// when to hold the connection if it is over one: at most [`MAX_HOLD`] at a time (a
    /// client's pings and its consumers on this connection are read between holds; a SEND
    /// still over the quota then holds it again).
    fn count_produce(
        &self,
        tenant: &str,
        client_id: &str,
        bytes: usize,
        took: Duration,
    ) -> Option<tokio::time::Instant> {
        let quotas = &self.ep.cfg.quotas;
        let principal = self.auth.as_ref().map_or(crate::wasm::ANONYMOUS, |a| a.principal.as_str());
        let user = crate::quota::user_of(principal);
        let client = crate::quota::Client { tenant, user, client_id };
        let throttle = quotas.record(&client, crate::quota::Kind::Produce, bytes as f64).max(quotas.record(
            &client,
            crate::quota::Kind::Request,
            crate::quota::request_percent(took),
        ));
        let throttle = throttle.min(MAX_HOLD);
        if !throttle.is_zero() {
            quotas.note_throttled(tenant, throttle);
            tracing::debug!(
                conn = self.id,
                tenant,
                user,
                client_id,
                ?throttle,
                "Pulsar producer throttled by a quota"
            );
            return Some(tokio::time::Instant::now() + throttle);
        }
        None
    }

    /// The connection's token expired (or its client did not answer the challenge in time).
    /// As a Pulsar broker does: a client that can refresh is sent AUTH_CHALLENGE and has
    /// [`REFRESH_GRACE`] to answer with a new token; any other connection is closed (Err).
    fn token_expired(&mut self) -> Result<(), String> {
        let Some(auth) = self.auth.as_mut() else { return Ok(()) };
        if auth.challenged.is_some() {
            return Err(format!(
                "{}'s token expired and no new one came within {REFRESH_GRACE:?}",
                auth.principal
            ));
        }
        if auth.expires > SystemTime::now() {
            return Ok(()); // woken early (the clock moved)
        }
        if !auth.refresh {
            return Err(format!("{}'s token expired (the client cannot refresh it)", auth.principal));
        }
        auth.challenged = Some(tokio::time::Instant::now() + REFRESH_GRACE);
        tracing::debug!(
            conn = self.id,
            principal = auth.principal,
            "token expired; asking the client for a new one"
        );
        self.send(
            Type::AuthChallenge,
            BaseCommand {
                auth_challenge: Some(CommandAuthChallenge {
                    server_version: Some(concat!("Guise ", env!("CARGO_PKG_VERSION")).to_string()),
                    challenge: Some(AuthData {
                        auth_method_name: Some("token".into()),
                        auth_data: Some(REFRESH_AUTH_DATA.to_vec()),
                    }),
                    protocol_version: Some(PROTOCOL_VERSION),
                }),
                ..Default::default()
            },
        );
        Ok(())
    }

    /// AUTH_RESPONSE: a fresh token, which must be valid and name the same principal (a
    /// connection does not change who it is); otherwise the connection is closed.
    fn refreshed(&mut self, data: Option<Vec<u8>>) -> Result<(), String> {
        let (Some(validator), Some(auth)) = (self.ep.cfg.auth.clone(), self.auth.as_mut()) else {
            return Err("AUTH_RESPONSE on a connection without token authentication".into());
        };
        let token = data.as_deref().and_then(|d| std::str::from_utf8(d).ok()).unwrap_or("");
        let valid = validator
            .validate(token.strip_prefix("token:").unwrap_or(token), SystemTime::now())
            .map_err(|why| format!("{AUTH_FAILED}: refreshing {}'s token: {why}", auth.principal))?;
        let principal = format!("User:{}", valid.name);
        if principal != auth.principal {
            return Err(format!(
                "{AUTH_FAILED}: a refreshed token names {principal}, not the connection's {}",
                auth.principal
            ));
        }
        auth.expires = valid.expires + validator.clock_skew;
        auth.challenged = None;
        tracing::debug!(conn = self.id, principal, "token refreshed");
        Ok(())
    }

    /// The connection is gone: its producers and consumers leave their topics.
    fn close(&mut self) {
        for (id, p) in self.producers.drain() {
            self.ep.producers.detach(&p.partition, self.id, id);
        }
        for (id, sub) in self.consumers.drain() {
            self.ep.subs.detach(&sub, self.id, id);
        }
    }
}

/// Where a start or seek message id points: earliest (-1:-1), latest (i64::MAX), or its entry.
/// Delivery starts with that whole entry: Pulsar clients themselves drop the messages before a
/// reader's start (and the start itself unless it is inclusive) and before a seek's target.
fn start_of(id: &MessageIdData) -> Start {
    let (ledger, entry) = (id.ledger_id as i64, id.entry_id as i64);
    if ledger < 0 || entry < 0 {
        Start::Earliest
    } else if ledger == i64::MAX || entry == i64::MAX {
        Start::Latest
    } else {
        Start::Offset(entry)
    }
}

fn attach_error(e: AttachError) -> TopicError {
    match e {
        AttachError::Busy(message) => TopicError { error: ServerError::ConsumerBusy, message },
        AttachError::Storage(e) => storage_error(e),
    }
}
