//! Just enough of Kafka's consumer embedded protocol (`ConsumerProtocolSubscription` and
//! `ConsumerProtocolAssignment`, versions 0–3) to know which topics a consumer group subscribes
//! to (OffsetDelete) and which partitions each member was given (the admin lag view).
//!
//! Both start with an int16 version followed by non-flexible fields, and newer versions only
//! append fields, so reading the prefix works for every version. Anything malformed is `None`:
//! the caller then assumes the worst (subscribed to everything) or shows nothing.

/// A reader of big-endian Kafka primitives over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    /// An array count, checked against what is left (each element takes at least `min` bytes),
    /// so nothing is allocated from a bogus length.
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n.saturating_mul(min) <= self.0.len()).then_some(n)
    }
}

/// The topics of a consumer's subscription metadata.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(metadata);
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let n = r.count(2)?;
    (0..n).map(|_| r.string()).collect()
}

/// The partitions of a consumer's assignment: (topic, partitions).
pub fn assignment_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(assignment);
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let n = r.count(6)?;
    (0..n)
        .map(|_| {
            let topic = r.string()?;
            let m = r.count(4)?;
            let partitions = (0..m).map(|_| r.i32()).collect::<Option<Vec<_>>>()?;
            Some((topic, partitions))
        })
        .collect()
}

#[doc(hidden)]
pub mod testing {
    //! Encoders for tests (the host's coordinator tests use them too).

    fn put_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A v0 subscription to `topics` with empty user data.
    pub fn subscription(topics: &[&str]) -> Vec<u8> {
        let mut out = 0i16.to_be_bytes().to_vec();
        out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            put_string(&mut out, t);
        }
        out.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
        out
    }

    /// A v0 assignment.
    pub fn assignment(parts: &[(&str, &[i32])]) -> Vec<u8> {
        let mut out = 0i16.to_be_bytes().to_vec();
        out.extend_from_slice(&(parts.len() as i32).to_be_bytes());
        for (t, ps) in parts {
            put_string(&mut out, t);
            out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
            for p in *ps {
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assignment, subscription};
    use super::*;

    #[test]
    fn parses_subscriptions_and_assignments() {
        assert_eq!(subscription_topics(&subscription(&["a", "bb"])), Some(vec!["a".into(), "bb".into()]));
        assert_eq!(
            assignment_partitions(&assignment(&[("a", &[0, 2]), ("b", &[])])),
            Some(vec![("a".into(), vec![0, 2]), ("b".into(), vec![])])
        );
        assert_eq!(assignment_partitions(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_is_none() {
        assert_eq!(subscription_topics(&[0]), None);
        assert_eq!(subscription_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None, "huge count");
        let mut s = subscription(&["abc"]);
        s.truncate(8);
        assert_eq!(subscription_topics(&s), None);
        assert_eq!(assignment_partitions(&[0xff, 0xff]), None);
    }
}
