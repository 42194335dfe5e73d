//! Repeated log lines, rate-limited with a count (and the warning about secret files others may
//! read): a failure that recurs many times a second
//! (an accept loop out of descriptors, a flush of every partition on a failing disk) logs its
//! first occurrence, then at most one line per period saying how many were left out.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// How often a throttled line may be logged again.
pub const PERIOD: Duration = Duration::from_secs(10);

/// One kind of repeated line.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    /// Occurrences left out since the last line logged.
    suppressed: u64,
}

impl Throttle {
    pub const fn new(period: Duration) -> Throttle {
        Throttle { period, state: Mutex::new(State { last: None, suppressed: 0 }) }
    }

    /// An occurrence at `now`: Some(occurrences left out before it) when it should be logged.
    pub fn hit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock();
        if s.last.is_some_and(|last| now.duration_since(last) < self.period) {
            s.suppressed += 1;
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.suppressed))
    }

    /// [`hit_at`](Self::hit_at) now.
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }
}

/// Files that hold secrets (private keys, SCRAM credentials, admin tokens) are read where the
/// configuration names them and never echoed; one readable by other users is warned about (not
/// refused: containers often run so).
/// Warn when `path` (described as `what`) may be read by users other than its owner.
pub fn warn_if_readable_by_others(path: &std::path::Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "{what} is readable by other users; chmod 600 it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_logged_then_one_per_period_with_what_was_left_out() {
        let t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(t.hit_at(at(0)), Some(0));
        let logged: Vec<_> = (1..10_000).filter_map(|i| t.hit_at(at(i))).collect();
        assert!(logged.is_empty(), "10,000 occurrences in 10 s log one line");
        assert_eq!(t.hit_at(at(10_000)), Some(9_999), "the next line counts what was left out");
        assert_eq!(t.hit_at(at(10_001)), None);
        assert_eq!(t.hit_at(at(30_000)), Some(1));
    }
}
