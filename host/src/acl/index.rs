//! A tenant's bindings, indexed by resource type and name: a decision reads the bindings that can
//! cover the resource (its literal name, the literal `*`, and prefixed names that begin it) rather
//! than all of them, so one check costs about the same with 10 bindings or 100,000.

use guise_guest_sdk::AclBinding;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::codes;

#[derive(Default)]
pub struct Bindings {
    all: BTreeSet<AclBinding>,
    /// Resource type → resource name → its bindings (literal and prefixed).
    by_name: HashMap<i8, HashMap<Box<str>, Vec<AclBinding>>>,
    /// Resource type → the lengths (in bytes) of its prefixed names → how many bindings.
    prefix_lens: HashMap<i8, BTreeMap<usize, usize>>,
}

impl Bindings {
    pub fn iter(&self) -> std::collections::btree_set::Iter<'_, AclBinding> {
        self.all.iter()
    }

    pub fn insert(&mut self, b: AclBinding) -> bool {
        if self.all.contains(&b) {
            return false;
        }
        if b.pattern_type == codes::PREFIXED {
            *self
                .prefix_lens
                .entry(b.resource_type)
                .or_default()
                .entry(b.resource_name.len())
                .or_default() += 1;
        }
        let names = self.by_name.entry(b.resource_type).or_default();
        names.entry(b.resource_name.as_str().into()).or_default().push(b.clone());
        self.all.insert(b)
    }

    pub fn remove(&mut self, b: &AclBinding) -> bool {
        if !self.all.remove(b) {
            return false;
        }
        if let Some(names) = self.by_name.get_mut(&b.resource_type)
            && let Some(list) = names.get_mut(b.resource_name.as_str())
        {
            list.retain(|x| x != b);
            if list.is_empty() {
                names.remove(b.resource_name.as_str());
            }
        }
        if b.pattern_type == codes::PREFIXED
            && let Some(lens) = self.prefix_lens.get_mut(&b.resource_type)
            && let Some(n) = lens.get_mut(&b.resource_name.len())
        {
            *n -= 1;
            if *n == 0 {
                lens.remove(&b.resource_name.len());
            }
        }
        true
    }

    /// Every binding of `resource_type` that may cover the resource `name` (a superset of those
    /// [`applies`](super::applies) accepts, each once; allocates nothing).
    pub fn covering<'a>(&'a self, resource_type: i8, name: &'a str) -> impl Iterator<Item = &'a AclBinding> {
        let names = self.by_name.get(&resource_type);
        let exact = names.and_then(|m| m.get(name)).into_iter().flatten();
        let star = names
            .filter(|_| name != "*")
            .and_then(|m| m.get("*"))
            .into_iter()
            .flatten()
            .filter(|b| b.pattern_type == codes::LITERAL);
        let prefixes = self
            .prefix_lens
            .get(&resource_type)
            .into_iter()
            .flat_map(|lens| lens.keys())
            .take_while(move |&&n| n < name.len())
            .filter(move |&&n| n > 0 && name.is_char_boundary(n))
            .filter_map(move |&n| names?.get(&name[..n]))
            .flatten()
            .filter(|b| b.pattern_type == codes::PREFIXED);
        exact.chain(star).chain(prefixes)
    }
}

impl FromIterator<AclBinding> for Bindings {
    fn from_iter<I: IntoIterator<Item = AclBinding>>(iter: I) -> Self {
        let mut b = Bindings::default();
        for x in iter {
            b.insert(x);
        }
        b
    }
}
