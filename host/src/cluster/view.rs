//! What a host knows of the others: the heartbeats it heard, by node id, with the time each
//! arrived (by this host's clock only: hosts never compare clocks). Pure, so the rules are
//! tested without Pulsar.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One heartbeat, as every host appends it to the members topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: i32,
    /// When this run of the host started (ms since the epoch): a restart has a newer one.
    pub incarnation: i64,
    /// Where Kafka clients reach it.
    pub kafka_addr: String,
    pub rack: Option<String>,
    /// Counts this run's heartbeats.
    pub seq: u64,
    /// Its last: it is stopping (it released what it held).
    #[serde(default)]
    pub leaving: bool,
}

/// A live host, as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node_id: i32,
    pub incarnation: i64,
    pub kafka_addr: String,
    pub rack: Option<String>,
    /// How long ago its last heartbeat arrived.
    pub heard_ms_ago: u64,
}

/// What a heartbeat or the passing time changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Joined(i32),
    /// Came back with a newer incarnation (a restart the others did not see it leave for).
    Restarted(i32),
    Left(i32),
    /// Silent for longer than the session timeout.
    TimedOut(i32),
}

#[derive(Default, Debug)]
pub struct View {
    members: BTreeMap<i32, (Heartbeat, Instant)>,
}

impl View {
    /// Take `hb`, arrived at `at`. A heartbeat of an older incarnation than the one known (a
    /// zombie's, or one delayed past a restart) changes nothing; nor does an older sequence.
    pub fn heard(&mut self, hb: Heartbeat, at: Instant) -> Option<Change> {
        let id = hb.node_id;
        let known = self.members.get(&id).map(|(k, _)| k);
        if let Some(k) = known {
            let stale = (hb.incarnation, hb.seq) <= (k.incarnation, k.seq);
            // A leaving heartbeat is its run's last: anything else of that run came before it.
            if stale || (k.leaving && hb.incarnation == k.incarnation) {
                return None;
            }
        }
        let was_live = known.is_some_and(|k| !k.leaving);
        let change = match (was_live, hb.leaving) {
            (true, true) => Some(Change::Left(id)),
            (false, true) => None,
            (true, false) if known.is_some_and(|k| hb.incarnation > k.incarnation) => {
                Some(Change::Restarted(id))
            }
            (true, false) => None,
            (false, false) => Some(Change::Joined(id)),
        };
        // A host that left is remembered until the timeout (its older heartbeats still in
        // flight are ignored), but not live.
        self.members.insert(id, (hb, at));
        change
    }

    /// Forget hosts silent for `timeout` or more at `now` (and those that left): the ones
    /// that were live are returned as timed out.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Change> {
        let mut out = Vec::new();
        self.members.retain(|id, (hb, at)| {
            let silent = now.saturating_duration_since(*at) >= timeout;
            if silent && !hb.leaving {
                out.push(Change::TimedOut(*id));
            }
            !silent
        });
        out
    }

    /// The live hosts at `now`, by node id.
    pub fn live(&self, now: Instant, timeout: Duration) -> Vec<Member> {
        self.members
            .values()
            .filter(|(hb, at)| !hb.leaving && now.saturating_duration_since(*at) < timeout)
            .map(|(hb, at)| Member {
                node_id: hb.node_id,
                incarnation: hb.incarnation,
                kafka_addr: hb.kafka_addr.clone(),
                rack: hb.rack.clone(),
                heard_ms_ago: u64::try_from(now.saturating_duration_since(*at).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(node_id: i32, incarnation: i64, seq: u64) -> Heartbeat {
        Heartbeat {
            node_id,
            incarnation,
            kafka_addr: format!("h{node_id}:9092"),
            rack: None,
            seq,
            leaving: false,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(6);

    fn ids(v: &View, now: Instant) -> Vec<i32> {
        v.live(now, TIMEOUT).iter().map(|m| m.node_id).collect()
    }

    #[test]
    fn hosts_join_stay_while_heard_and_time_out() {
        let t0 = Instant::now();
        let mut v = View::default();
        assert_eq!(v.heard(hb(1, 100, 0), t0), Some(Change::Joined(1)));
        assert_eq!(v.heard(hb(2, 100, 0), t0), Some(Change::Joined(2)));
        assert_eq!(v.heard(hb(1, 100, 1), t0 + Duration::from_secs(5)), None);
        assert_eq!(ids(&v, t0 + Duration::from_secs(5)), [1, 2]);
        // Node 2 is silent for the timeout: not live, then forgotten.
        let later = t0 + Duration::from_secs(7);
        assert_eq!(ids(&v, later), [1]);
        assert_eq!(v.expire(later, TIMEOUT), [Change::TimedOut(2)]);
        assert_eq!(v.heard(hb(2, 100, 9), later), Some(Change::Joined(2)), "heard again after a pause");
    }

    #[test]
    fn a_restart_replaces_the_old_run_and_its_late_heartbeats_are_ignored() {
        let t0 = Instant::now();
        let mut v = View::default();
        v.heard(hb(1, 100, 5), t0);
        assert_eq!(v.heard(hb(1, 200, 0), t0), Some(Change::Restarted(1)));
        assert_eq!(v.heard(hb(1, 100, 6), t0), None, "the old run's late heartbeat");
        assert_eq!(v.live(t0, TIMEOUT)[0].incarnation, 200);
        assert_eq!(v.heard(hb(1, 200, 0), t0), None, "a repeat");
    }

    #[test]
    fn a_host_that_leaves_is_gone_at_once() {
        let t0 = Instant::now();
        let mut v = View::default();
        v.heard(hb(1, 100, 0), t0);
        v.heard(hb(2, 100, 0), t0);
        let leaving = Heartbeat { leaving: true, ..hb(2, 100, 1) };
        assert_eq!(v.heard(leaving, t0), Some(Change::Left(2)));
        assert_eq!(ids(&v, t0), [1]);
        assert_eq!(v.heard(hb(2, 100, 0), t0), None, "a heartbeat sent before it left");
        assert_eq!(v.expire(t0 + TIMEOUT, TIMEOUT), [Change::TimedOut(1)], "no second notice for 2");
        assert_eq!(v.heard(hb(2, 300, 0), t0 + TIMEOUT), Some(Change::Joined(2)), "its next run");
    }
}
