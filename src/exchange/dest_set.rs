//! The destinations one routing entry leads to (a direct key, a topic node, a fanout), each
//! once however many bindings lead there. A vector to walk when routing; past a few entries
//! also an index by id, so that adding or removing one costs the same whatever the count.
//! Most entries hold one destination (a queue bound by its own key): those cost one small
//! vector and no index (100,000 queues bound to amq.direct saved ~1 KB each).

use std::collections::HashMap;

use super::{DestId, Destination};

/// Past this many destinations the set keeps an index instead of scanning.
const SCAN_MAX: usize = 16;

#[derive(Default)]
pub struct DestSet {
    /// Each destination, with how many bindings lead to it (another key or other arguments
    /// make another binding to the same destination).
    all: Vec<(Destination, u32)>,
    /// Where each destination is in `all`, once there are more than [`SCAN_MAX`].
    at: Option<HashMap<DestId, usize>>,
}

impl DestSet {
    fn position(&self, id: &DestId) -> Option<usize> {
        match &self.at {
            Some(at) => at.get(id).copied(),
            None => self.all.iter().position(|(d, _)| d.id() == *id),
        }
    }

    pub fn insert(&mut self, dest: &Destination) {
        let id = dest.id();
        if let Some(i) = self.position(&id) {
            self.all[i].1 += 1;
            return;
        }
        if self.all.len() < SCAN_MAX {
            // One at a time while small: a first push would make room for four.
            self.all.reserve_exact(1);
        }
        self.all.push((dest.clone(), 1));
        match &mut self.at {
            Some(at) => {
                at.insert(id, self.all.len() - 1);
            }
            None if self.all.len() > SCAN_MAX => {
                let at = self.all.iter().enumerate().map(|(i, (d, _))| (d.id(), i));
                self.at = Some(at.collect());
            }
            None => {}
        }
    }

    /// Drops one binding to `dest`, and `dest` with its last.
    pub fn remove(&mut self, dest: &Destination) {
        let id = dest.id();
        let Some(i) = self.position(&id) else {
            return;
        };
        self.all[i].1 -= 1;
        if self.all[i].1 > 0 {
            return;
        }
        self.all.swap_remove(i);
        if let Some(at) = &mut self.at {
            at.remove(&id);
            if let Some((moved, _)) = self.all.get(i) {
                at.insert(moved.id(), i);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Destination> {
        self.all.iter().map(|(d, _)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: u64) -> Destination {
        use crate::exchange::{Exchange, ExchangeConfig, ExchangeKind};
        let name = format!("x{id}");
        Destination::Exchange(Exchange::new(ExchangeConfig::durable(
            id,
            &name,
            ExchangeKind::Fanout,
        )))
    }

    #[test]
    fn each_destination_once_and_gone_with_its_last_binding_scanned_or_indexed() {
        for n in [3u64, 40] {
            let dests: Vec<Destination> = (0..n).map(ex).collect();
            let mut s = DestSet::default();
            for d in dests.iter().chain(dests.iter()) {
                s.insert(d);
            }
            assert_eq!(s.iter().count(), n as usize, "n={n}");
            for d in &dests {
                s.remove(d);
            }
            assert_eq!(s.iter().count(), n as usize, "one binding left each, n={n}");
            for d in dests.iter().step_by(2) {
                s.remove(d);
            }
            let left: Vec<DestId> = s.iter().map(|d| d.id()).collect();
            let want: Vec<DestId> = dests.iter().skip(1).step_by(2).map(|d| d.id()).collect();
            assert_eq!(left.len(), want.len(), "n={n}");
            assert!(want.iter().all(|w| left.contains(w)), "n={n}");
            for d in dests.iter().skip(1).step_by(2) {
                s.remove(d);
            }
            assert!(s.is_empty(), "n={n}");
        }
    }
}
