//! Several hosts in front of one Pulsar (issue 17), step 1 of the design in
//! `docs/architecture.md` ("Several hosts in front of one Pulsar"): this host's node lease and
//! its view of the live hosts. Ownership and routing are not built yet, so nothing else uses the
//! view: every host still serves every partition.
//!
//! - **The node lease**: `persistent://META/node-N` (META: `pulsar_metadata_namespace`), taken
//!   with an ExclusiveWithFencing producer (a restarted host fences its own zombie) and held with
//!   an Exclusive one (the `pulsar` crate re-creates a producer after a dropped connection, which
//!   must not fence a newer holder back). It is written every few heartbeats: a send that fails
//!   because another process took the lease (a second host with this node id) ends this host
//!   ([`Members::lost`]).
//! - **Heartbeats**: every `cluster_heartbeat_ms`, a JSON [`Heartbeat`] on
//!   `persistent://META/members`, which every host reads from its end (a non-durable reader):
//!   a host is live while its last heartbeat arrived less than `cluster_session_timeout_ms`
//!   ago, by the reader's own clock ([`View`]). A stopping host appends a `leaving` one.

mod view;

pub use view::{Change, Heartbeat, Member, View};

use crate::storage::StorageError;
use crate::storage::pulsar::client::{
    Bridge, Client, EXCLUSIVE, EXCLUSIVE_WITH_FENCING, OPERATION_TIMEOUT, Owned, is_fenced, within,
};
use ::pulsar::consumer::InitialPosition;
use ::pulsar::producer::Message;
use ::pulsar::reader::Reader;
use ::pulsar::{ConsumerOptions, Producer, ProducerOptions, SubType, TokioExecutor};
use futures::StreamExt;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(thiserror::Error, Debug)]
pub enum ClusterError {
    #[error("joining the cluster: {0}")]
    Storage(#[from] StorageError),
    #[error(
        "node id {node_id} is held by another host (its lease {topic} is taken): give each host its own node_id"
    )]
    NodeIdTaken { node_id: i32, topic: String },
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The Pulsar service URL, and how to reach it (as the storage backend does).
    pub url: String,
    pub token: Option<String>,
    pub trust: Option<PathBuf>,
    /// `tenant/namespace` of the lease and members topics.
    pub metadata_namespace: String,
    pub node_id: i32,
    /// Where Kafka clients reach this host.
    pub kafka_addr: String,
    pub rack: Option<String>,
    pub heartbeat: Duration,
    pub session_timeout: Duration,
}

/// Heartbeats between two writes to the node lease.
const LEASE_EVERY: u64 = 3;

/// What the membership tasks share.
struct Shared {
    config: ClusterConfig,
    incarnation: i64,
    view: Mutex<View>,
    /// When this host last heard its own heartbeat back: while it does not, it cannot tell a
    /// silent host from its own trouble, and declares nobody dead.
    heard_self: Mutex<Option<Instant>>,
    /// The incarnation of another run of this node id, once its heartbeat arrived (a second
    /// process given this node id).
    clash: Mutex<Option<i64>>,
    lost: watch::Sender<Option<String>>,
}

impl Shared {
    fn topic(&self, name: &str) -> String {
        format!("persistent://{}/{name}", self.config.metadata_namespace)
    }

    fn heartbeat(&self, seq: u64, leaving: bool) -> Heartbeat {
        Heartbeat {
            node_id: self.config.node_id,
            incarnation: self.incarnation,
            kafka_addr: self.config.kafka_addr.clone(),
            rack: self.config.rack.clone(),
            seq,
            leaving,
        }
    }
}

/// This host's membership: its lease, its heartbeats and its view of the others. Dropping it
/// stops them (and closes its Pulsar connection).
pub struct Members {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Fires once the sending task has sent its leaving heartbeat (or given up).
    sent_leaving: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// The connection the tasks use (they stop with its runtime).
    _bridge: Bridge,
}

impl Drop for Members {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Members {
    /// Connect, take this node's lease (fencing whoever held it: this node's previous run, or
    /// another process given the same node id, which then stops) and start heartbeating.
    pub async fn start(config: ClusterConfig) -> Result<Arc<Members>, ClusterError> {
        let c = config.clone();
        // Connecting blocks a thread (the bridge's own runtime does the work).
        let bridge = tokio::task::spawn_blocking(move || {
            Bridge::connect(&c.url, c.token.as_deref(), c.trust.as_deref())
        })
        .await
        .map_err(|e| StorageError::Unavailable(format!("connecting: {e}")))??;
        let (lost, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            config,
            incarnation: crate::storage::now_ms(),
            view: Mutex::new(View::default()),
            heard_self: Mutex::new(None),
            clash: Mutex::new(None),
            lost,
        });
        let (client, handle) = (bridge.client.clone(), bridge.handle().clone());
        let node_id = shared.config.node_id;
        let (lease, members) = (shared.topic(&format!("node-{node_id}")), shared.topic("members"));
        let lease_topic = lease.clone();
        let h = handle.clone();
        let producers = bridge
            .run(move || async move {
                // Fence whoever held the lease, then hold it without fencing (a producer the
                // crate re-creates after a dropped connection must not fence a newer holder).
                let mut fencing = producer(&client, &lease, EXCLUSIVE_WITH_FENCING).await?;
                within(OPERATION_TIMEOUT, "closing the fencing producer", fencing.close()).await?;
                drop(Owned::new(fencing, h.clone()));
                let held = producer(&client, &lease, EXCLUSIVE).await?;
                let beats = producer(&client, &members, 0).await?;
                Ok((Owned::new(held, h.clone()), Owned::new(beats, h)))
            })
            .await
            .map_err(|e| match e {
                e if is_fenced(&e) => ClusterError::NodeIdTaken { node_id, topic: lease_topic.clone() },
                e => ClusterError::Storage(e),
            })?;
        let (stop, _) = watch::channel(false);
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
        let (s, stop_rx) = (shared.clone(), stop.subscribe());
        handle.spawn(async move {
            send_loop(s, producers.0, producers.1, stop_rx).await;
            let _ = sent_tx.send(());
        });
        let (s, stop_rx, client) = (shared.clone(), stop.subscribe(), bridge.client.clone());
        handle.spawn(read_loop(s, client, handle.clone(), stop_rx));
        tracing::info!(node_id, lease = %lease_topic, "joined the cluster");
        Ok(Arc::new(Members { shared, stop, sent_leaving: Mutex::new(Some(sent_rx)), _bridge: bridge }))
    }

    pub fn node_id(&self) -> i32 {
        self.shared.config.node_id
    }

    /// The live hosts, this one included once its own heartbeat came back, by node id.
    pub fn live(&self) -> Vec<Member> {
        self.shared.view.lock().live(Instant::now(), self.shared.config.session_timeout)
    }

    /// Why this host lost its node lease, once it has (it must stop serving).
    pub fn lost(&self) -> watch::Receiver<Option<String>> {
        self.shared.lost.subscribe()
    }

    /// Append a leaving heartbeat and stop (at shutdown; waits two heartbeats at most, so that
    /// a Pulsar that does not answer does not hold the shutdown up).
    pub async fn leave(&self) {
        let _ = self.stop.send(true);
        let sent = self.sent_leaving.lock().take();
        if let Some(sent) = sent {
            let _ = tokio::time::timeout(self.shared.config.heartbeat * 2, sent).await;
        }
    }
}

/// Heartbeat and touch the lease until stopped (then a leaving heartbeat) or displaced. Sends
/// run here, apart from the reading, so a slow Pulsar delays heartbeats, not what is heard.
async fn send_loop(
    shared: Arc<Shared>,
    mut lease: Owned<Producer<TokioExecutor>>,
    mut beats: Owned<Producer<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let mut tick = tokio::time::interval(config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seq, mut failures) = (0u64, 0u64);
    let limit = config.heartbeat * 2;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                let _ = send(&mut beats, &shared.heartbeat(seq + 1, true), limit).await;
                tracing::info!(node_id = config.node_id, "left the cluster");
                return;
            }
        }
        seq += 1;
        if let Err(e) = send(&mut beats, &shared.heartbeat(seq, false), limit).await {
            failures += 1;
            if failures % 10 == 1 {
                tracing::warn!(
                    node_id = config.node_id,
                    failures,
                    "cannot append this host's heartbeat: {e}"
                );
            }
        }
        if !seq.is_multiple_of(LEASE_EVERY) {
            continue;
        }
        let stamp = shared.incarnation.to_be_bytes().to_vec();
        let Err(e) = send_raw(&mut lease, stamp, limit).await else { continue };
        // Refused as fenced: another process took the lease, or the broker still held this
        // host's own producer when the crate re-created it after a dropped connection. Only a
        // heartbeat of this node id from another run tells them apart.
        let clash = *shared.clash.lock();
        match clash {
            Some(other) if is_fenced(&e) => {
                let why = format!(
                    "node id {} was taken by another host (its run {other}; the lease {} is fenced): {e}",
                    config.node_id,
                    shared.topic(&format!("node-{}", config.node_id))
                );
                tracing::error!("{why}");
                let _ = shared.lost.send(Some(why));
                return;
            }
            _ => tracing::warn!(node_id = config.node_id, "cannot write this node's lease: {e}"),
        }
    }
}

/// Follow the members topic until stopped: the view, this host's own heartbeats coming back,
/// and another run of this node id.
async fn read_loop(
    shared: Arc<Shared>,
    client: Client,
    handle: tokio::runtime::Handle,
    mut stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let members = shared.topic("members");
    let mut reader: Option<Owned<Reader<Vec<u8>, TokioExecutor>>> = None;
    let mut opened = Instant::now();
    let mut tick = tokio::time::interval(config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if reader.is_none() {
            let open = tokio::select! {
                r = open_reader(&client, &members) => r,
                _ = stop.changed() => return,
            };
            match open {
                Ok(r) => {
                    reader = Some(Owned::new(r, handle.clone()));
                    opened = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(topic = %members, "cannot read the cluster's heartbeats: {e}");
                    tokio::time::sleep(config.heartbeat).await;
                    continue;
                }
            }
        }
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let heard = *shared.heard_self.lock();
                let since = |at: Instant| now.saturating_duration_since(at);
                if heard.is_some_and(|at| since(at) < config.session_timeout) {
                    for change in shared.view.lock().expire(now, config.session_timeout) {
                        log_change(&change);
                    }
                } else if since(heard.map_or(opened, |at| at.max(opened))) >= config.session_timeout {
                    // Its own heartbeats do not come back: the reader (or Pulsar) is stuck.
                    // Nobody is declared dead meanwhile; read again.
                    tracing::warn!(topic = %members, "this host does not hear its own heartbeats; reading again");
                    reader = None;
                }
            }
            next = next_message(&mut reader) => match next {
                Ok(payload) => match serde_json::from_slice::<Heartbeat>(&payload) {
                    Ok(hb) => {
                        let now = Instant::now();
                        if hb.node_id == config.node_id {
                            if hb.incarnation == shared.incarnation {
                                *shared.heard_self.lock() = Some(now);
                            } else if !hb.leaving {
                                *shared.clash.lock() = Some(hb.incarnation);
                            }
                        }
                        let change = shared.view.lock().heard(hb, now);
                        if let Some(change) = change {
                            log_change(&change);
                        }
                    }
                    Err(e) => tracing::debug!(topic = %members, "not a heartbeat: {e}"),
                },
                Err(e) => {
                    tracing::warn!(topic = %members, "reading the cluster's heartbeats: {e}; reading again");
                    reader = None;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

fn log_change(change: &Change) {
    match change {
        Change::Joined(id) => tracing::info!(node_id = id, "a host joined the cluster"),
        Change::Restarted(id) => tracing::info!(node_id = id, "a host restarted"),
        Change::Left(id) => tracing::info!(node_id = id, "a host left the cluster"),
        Change::TimedOut(id) => tracing::warn!(node_id = id, "a host went silent: dead to this host"),
    }
}

async fn producer(client: &Client, topic: &str, mode: i32) -> Result<Producer<TokioExecutor>, StorageError> {
    let options = ProducerOptions { access_mode: Some(mode), ..Default::default() };
    within(
        OPERATION_TIMEOUT,
        format!("creating a producer on {topic}"),
        client.producer().with_topic(topic).with_options(options).build(),
    )
    .await
}

async fn open_reader(client: &Client, topic: &str) -> Result<Reader<Vec<u8>, TokioExecutor>, StorageError> {
    // From the end: heartbeats that were sent before this host started say nothing of now.
    let options = ConsumerOptions {
        initial_position: InitialPosition::Latest,
        durable: Some(false),
        ..Default::default()
    };
    within(
        OPERATION_TIMEOUT,
        format!("opening a reader of {topic}"),
        client
            .reader()
            .with_topic(topic)
            .with_subscription(format!("guise-members-{}", uuid::Uuid::new_v4()))
            .with_subscription_type(SubType::Exclusive)
            .with_options(options)
            .into_reader::<Vec<u8>>(),
    )
    .await
}

/// The next message's payload; pending for ever without a reader.
async fn next_message(
    reader: &mut Option<Owned<Reader<Vec<u8>, TokioExecutor>>>,
) -> Result<Vec<u8>, StorageError> {
    let Some(r) = reader.as_mut() else { return std::future::pending().await };
    match r.next().await {
        Some(Ok(msg)) => Ok(msg.payload.data),
        Some(Err(e)) => Err(StorageError::Unavailable(e.to_string())),
        None => Err(StorageError::Unavailable("the reader ended".into())),
    }
}

async fn send(
    producer: &mut Producer<TokioExecutor>,
    hb: &Heartbeat,
    limit: Duration,
) -> Result<(), StorageError> {
    let payload = serde_json::to_vec(hb).map_err(|e| StorageError::Unavailable(e.to_string()))?;
    send_raw(producer, payload, limit).await
}

async fn send_raw(
    producer: &mut Producer<TokioExecutor>,
    payload: Vec<u8>,
    limit: Duration,
) -> Result<(), StorageError> {
    let message = Message { payload, ..Default::default() };
    let receipt = within(limit, "sending", producer.send_non_blocking(message)).await?;
    within(limit, "waiting for the receipt", receipt).await.map(|_| ())
}
