//! Producer access modes per topic partition (Pulsar's `ProducerAccessMode`): any number of
//! Shared producers, or one Exclusive producer; ExclusiveWithFencing closes the others and takes
//! the topic; WaitForExclusive queues until the topic is free. Producers are keyed by
//! (connection, producer id), as producer ids are chosen by each connection's client.

use super::{Outbox, command};
use crate::pulsar::proto::base_command::Type;
use crate::pulsar::proto::{BaseCommand, CommandCloseProducer, CommandProducerSuccess, ProducerAccessMode};
use crate::storage::TopicName;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};

pub type PartitionKey = (TopicName, i32);
type ProducerKey = (u64, u64);

struct Slot {
    key: ProducerKey,
    name: String,
    exclusive: bool,
    out: Outbox,
}

struct Waiter {
    key: ProducerKey,
    request_id: u64,
    name: String,
    out: Outbox,
}

#[derive(Default)]
struct Partition {
    producers: Vec<Slot>,
    waiting: VecDeque<Waiter>,
    /// Bumped each time an exclusive producer takes the topic.
    epoch: u64,
}

/// The outcome of attaching a producer.
#[derive(Debug, PartialEq, Eq)]
pub enum Attach {
    /// Attached; the topic epoch to report.
    Ready(u64),
    /// WaitForExclusive: queued; PRODUCER_SUCCESS follows when the topic is free.
    Waiting,
    /// Refused (ProducerBusy), with the reason.
    Busy(String),
    /// Refused (ProducerFenced), with the reason: an Exclusive producer while others are
    /// connected or waiting, as Apache Pulsar answers; or an exclusive producer coming back
    /// after another took the topic.
    Fenced(String),
}

#[derive(Default)]
pub struct Producers {
    partitions: Mutex<HashMap<PartitionKey, Partition>>,
}

impl Producers {
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &self,
        partition: &PartitionKey,
        conn: u64,
        id: u64,
        mode: ProducerAccessMode,
        topic_epoch: Option<u64>,
        request_id: u64,
        name: &str,
        out: &Outbox,
    ) -> Attach {
        let mut all = self.partitions.lock();
        let p = all.entry(partition.clone()).or_default();
        let key = (conn, id);
        let slot = |exclusive| Slot { key, name: name.to_string(), exclusive, out: out.clone() };
        let exclusive = mode != ProducerAccessMode::Shared;
        if p.producers.iter().any(|s| s.name == name && s.key != key)
            || p.waiting.iter().any(|w| w.name == name && w.key != key)
        {
            // Names are unique per topic (Apache Pulsar: ProducerBusy).
            return Attach::Busy(format!("producer with name '{name}' is already connected to the topic"));
        }
        if exclusive && topic_epoch.is_some_and(|e| e < p.epoch) && !p.producers.is_empty() {
            return Attach::Fenced("another exclusive producer took the topic".into());
        }
        let has_exclusive = p.producers.iter().any(|s| s.exclusive) || !p.waiting.is_empty();
        match mode {
            ProducerAccessMode::Shared => {
                if has_exclusive {
                    return Attach::Busy("the topic has an exclusive producer".into());
                }
                p.producers.push(slot(false));
                Attach::Ready(p.epoch)
            }
            ProducerAccessMode::Exclusive if has_exclusive => {
                Attach::Fenced("the topic has an exclusive producer".into())
            }
            ProducerAccessMode::Exclusive if !p.producers.is_empty() => {
                Attach::Fenced(format!("the topic has {} shared producer(s)", p.producers.len()))
            }
            ProducerAccessMode::WaitForExclusive if !p.producers.is_empty() => {
                p.waiting.push_back(Waiter { key, request_id, name: name.to_string(), out: out.clone() });
                Attach::Waiting
            }
            ProducerAccessMode::Exclusive | ProducerAccessMode::WaitForExclusive => {
                p.epoch += 1;
                p.producers.push(slot(true));
                Attach::Ready(p.epoch)
            }
            ProducerAccessMode::ExclusiveWithFencing => {
                for fenced in p.producers.drain(..) {
                    tracing::info!(
                        conn = fenced.key.0,
                        producer = fenced.key.1,
                        "fencing a producer: an exclusive-with-fencing producer took the topic"
                    );
                    fenced.out.send(command(
                        Type::CloseProducer,
                        BaseCommand {
                            close_producer: Some(CommandCloseProducer {
                                producer_id: fenced.key.1,
                                request_id: 0,
                            }),
                            ..Default::default()
                        },
                    ));
                }
                p.epoch += 1;
                p.producers.push(slot(true));
                Attach::Ready(p.epoch)
            }
        }
    }

    /// Whether the producer still holds its place (a fenced one does not).
    pub fn attached(&self, partition: &PartitionKey, conn: u64, id: u64) -> bool {
        self.partitions.lock().get(partition).is_some_and(|p| p.producers.iter().any(|s| s.key == (conn, id)))
    }

    /// Remove a producer (closed, or its connection gone); a waiting exclusive producer then
    /// gets the topic.
    pub fn detach(&self, partition: &PartitionKey, conn: u64, id: u64) {
        let mut all = self.partitions.lock();
        let Some(p) = all.get_mut(partition) else { return };
        p.producers.retain(|s| s.key != (conn, id));
        p.waiting.retain(|w| w.key != (conn, id));
        while p.producers.is_empty() {
            let Some(w) = p.waiting.pop_front() else { break };
            p.epoch += 1;
            let ready = BaseCommand {
                producer_success: Some(CommandProducerSuccess {
                    request_id: w.request_id,
                    producer_name: w.name.clone(),
                    last_sequence_id: Some(-1),
                    topic_epoch: Some(p.epoch),
                    producer_ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            if w.out.send(command(Type::ProducerSuccess, ready)) {
                p.producers.push(Slot { key: w.key, name: w.name, exclusive: true, out: w.out });
            }
        }
        if p.producers.is_empty() && p.waiting.is_empty() && p.epoch == 0 {
            // Kept once an exclusive producer had it: the epoch tells a fenced one it was fenced.
            all.remove(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::pulsar::Outbox;

    #[test]
    fn access_modes() {
        let ps = Producers::default();
        let key = (TopicName::new("public", "default", "t"), 0);
        let (tx, mut rx) = Outbox::new();
        assert_eq!(ps.attach(&key, 1, 1, ProducerAccessMode::Shared, None, 1, "a", &tx), Attach::Ready(0));
        assert_eq!(ps.attach(&key, 1, 2, ProducerAccessMode::Shared, None, 2, "b", &tx), Attach::Ready(0));
        assert!(matches!(
            ps.attach(&key, 1, 3, ProducerAccessMode::Shared, None, 2, "b", &tx),
            Attach::Busy(_)
        ));
        assert!(matches!(
            ps.attach(&key, 2, 1, ProducerAccessMode::Exclusive, None, 3, "c", &tx),
            Attach::Fenced(_)
        ));
        assert_eq!(
            ps.attach(&key, 2, 2, ProducerAccessMode::WaitForExclusive, None, 4, "d", &tx),
            Attach::Waiting
        );
        ps.detach(&key, 1, 1);
        assert!(rx.try_recv().is_none(), "one shared producer is still there");
        ps.detach(&key, 1, 2);
        assert!(rx.try_recv().is_some(), "the waiting producer got the topic");
        assert!(ps.attached(&key, 2, 2));
        assert!(matches!(
            ps.attach(&key, 3, 1, ProducerAccessMode::Shared, None, 5, "e", &tx),
            Attach::Busy(_)
        ));
        assert_eq!(
            ps.attach(&key, 3, 2, ProducerAccessMode::ExclusiveWithFencing, None, 6, "f", &tx),
            Attach::Ready(2)
        );
        assert!(!ps.attached(&key, 2, 2), "fenced");
        assert!(rx.try_recv().is_some(), "the fenced producer was told to close");
    }
}
