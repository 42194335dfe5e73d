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
use crate::storage::pulsar::client::{Bridge, Client, OPERATION_TIMEOUT, Owned, within};
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

/// Pulsar's producer access modes.
const EXCLUSIVE: i32 = 1;
const EXCLUSIVE_WITH_FENCING: i32 = 3;
/// Heartbeats between two writes to the node lease.
const LEASE_EVERY: u64 = 3;

/// This host's membership: its lease, its heartbeats and its view of the others.
pub struct Members {
    config: ClusterConfig,
    incarnation: i64,
    view: Mutex<View>,
    lost: watch::Sender<Option<String>>,
    stop: watch::Sender<bool>,
    done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    bridge: Bridge,
}

impl Members {
    /// Connect, take this node's lease and start heartbeating. Fails if the lease cannot be
    /// taken and held (another process holds it: two hosts with one node id).
    pub async fn start(config: ClusterConfig) -> Result<Arc<Members>, ClusterError> {
        let c = config.clone();
        // Connecting blocks a thread (the bridge's own runtime does the work).
        let bridge = tokio::task::spawn_blocking(move || {
            Bridge::connect(&c.url, c.token.as_deref(), c.trust.as_deref())
        })
        .await
        .map_err(|e| StorageError::Unavailable(format!("connecting: {e}")))??;
        let incarnation = crate::storage::now_ms();
        let (lost, _) = watch::channel(None);
        let (stop, _) = watch::channel(false);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let me = Arc::new(Members {
            config,
            incarnation,
            view: Mutex::new(View::default()),
            lost,
            stop,
            done: Mutex::new(Some(done_rx)),
            bridge,
        });
        let (client, handle) = (me.bridge.client.clone(), me.bridge.handle().clone());
        let (lease, members) = (me.topic(&format!("node-{}", me.config.node_id)), me.topic("members"));
        let (node_id, lease_topic) = (me.config.node_id, lease.clone());
        let producers = me
            .bridge
            .run(move || async move {
                // Fence whoever held the lease (this node's previous run), then hold it without fencing.
                let fencing = producer(&client, &lease, EXCLUSIVE_WITH_FENCING).await?;
                drop(Owned::new(fencing, handle.clone()));
                let held = producer(&client, &lease, EXCLUSIVE).await?;
                let beats = producer(&client, &members, 0).await?;
                Ok((Owned::new(held, handle.clone()), Owned::new(beats, handle)))
            })
            .await
            .map_err(|e| match e {
                e if is_fenced(&e) => ClusterError::NodeIdTaken { node_id, topic: lease_topic.clone() },
                e => ClusterError::Storage(e),
            })?;
        let m = me.clone();
        me.bridge.handle().spawn(async move {
            m.run(producers.0, producers.1).await;
            let _ = done_tx.send(());
        });
        tracing::info!(node_id, lease = %lease_topic, "joined the cluster");
        Ok(me)
    }

    fn topic(&self, name: &str) -> String {
        format!("persistent://{}/{name}", self.config.metadata_namespace)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The live hosts, this one included once its own heartbeat came back, by node id.
    pub fn live(&self) -> Vec<Member> {
        self.view.lock().live(Instant::now(), self.config.session_timeout)
    }

    /// Why this host lost its node lease, once it has (it must stop serving).
    pub fn lost(&self) -> watch::Receiver<Option<String>> {
        self.lost.subscribe()
    }

    /// Append a leaving heartbeat and stop (at shutdown, after the host stopped serving).
    pub async fn leave(&self) {
        let _ = self.stop.send(true);
        let done = self.done.lock().take();
        if let Some(done) = done {
            let _ = tokio::time::timeout(OPERATION_TIMEOUT, done).await;
        }
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

    /// Heartbeat, touch the lease and follow the members topic until stopped or fenced.
    async fn run(
        self: Arc<Self>,
        mut lease: Owned<Producer<TokioExecutor>>,
        mut beats: Owned<Producer<TokioExecutor>>,
    ) {
        let members = self.topic("members");
        let (client, handle) = (self.bridge.client.clone(), self.bridge.handle().clone());
        let mut reader: Option<Owned<Reader<Vec<u8>, TokioExecutor>>> = None;
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.stop.subscribe();
        let mut seq = 0u64;
        let mut failures = 0u64;
        loop {
            if reader.is_none() {
                match open_reader(&client, &members).await {
                    Ok(r) => reader = Some(Owned::new(r, handle.clone())),
                    Err(e) => tracing::warn!(topic = %members, "cannot read the cluster's heartbeats: {e}"),
                }
            }
            tokio::select! {
                _ = tick.tick() => {
                    seq += 1;
                    if let Err(e) = send(&mut beats, &self.heartbeat(seq, false), self.config.heartbeat * 2).await {
                        failures += 1;
                        if failures % 10 == 1 {
                            tracing::warn!(node_id = self.config.node_id, failures, "cannot append this host's heartbeat: {e}");
                        }
                    }
                    if seq.is_multiple_of(LEASE_EVERY)
                        && let Err(e) = send_raw(&mut lease, Vec::new(), self.config.heartbeat * 2).await
                        && is_fenced(&e)
                    {
                        let why = format!(
                            "node id {} was taken by another host (its lease {} is fenced): {e}",
                            self.config.node_id,
                            self.topic(&format!("node-{}", self.config.node_id))
                        );
                        tracing::error!("{why}");
                        let _ = self.lost.send(Some(why));
                        return;
                    }
                    for change in self.view.lock().expire(Instant::now(), self.config.session_timeout) {
                        log_change(&change);
                    }
                }
                next = next_message(&mut reader) => match next {
                    Some(Ok(payload)) => match serde_json::from_slice::<Heartbeat>(&payload) {
                        Ok(hb) => {
                            if let Some(change) = self.view.lock().heard(hb, Instant::now()) {
                                log_change(&change);
                            }
                        }
                        Err(e) => tracing::debug!(topic = %members, "not a heartbeat: {e}"),
                    },
                    Some(Err(e)) => {
                        tracing::warn!(topic = %members, "reading the cluster's heartbeats: {e}; reopening");
                        reader = None;
                        tokio::time::sleep(self.config.heartbeat).await;
                    }
                    None => {}
                },
                _ = stop.changed() => {
                    let _ = send(&mut beats, &self.heartbeat(seq + 1, true), OPERATION_TIMEOUT).await;
                    tracing::info!(node_id = self.config.node_id, "left the cluster");
                    return;
                }
            }
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

/// Whether `e` says a producer was fenced or refused because another holds the topic.
fn is_fenced(e: &StorageError) -> bool {
    let text = e.to_string();
    text.contains("ProducerBusy") || text.contains("Fenced")
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
) -> Option<Result<Vec<u8>, StorageError>> {
    let Some(r) = reader.as_mut() else { return std::future::pending().await };
    match r.next().await {
        Some(Ok(msg)) => Some(Ok(msg.payload.data)),
        Some(Err(e)) => Some(Err(StorageError::Unavailable(e.to_string()))),
        None => Some(Err(StorageError::Unavailable("the reader ended".into()))),
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
