//! The destinations one routing entry leads to (a direct key, a topic node, a fanout), each
//! once however many bindings lead there. A vector to walk when routing, an index by id so
//! that adding or removing one costs the same whatever the count.

use std::collections::HashMap;

use super::{DestId, Destination};

#[derive(Default)]
pub struct DestSet {
    all: Vec<Destination>,
    /// Where each destination is in `all`, and how many bindings lead to it (another key or
    /// other arguments make another binding to the same destination).
    at: HashMap<DestId, (usize, u32)>,
}

impl DestSet {
    pub fn insert(&mut self, dest: &Destination) {
        let next = self.all.len();
        let e = self.at.entry(dest.id()).or_insert((next, 0));
        if e.1 == 0 {
            self.all.push(dest.clone());
        }
        e.1 += 1;
    }

    /// Drops one binding to `dest`, and `dest` with its last.
    pub fn remove(&mut self, dest: &Destination) {
        let id = dest.id();
        let Some(e) = self.at.get_mut(&id) else {
            return;
        };
        e.1 -= 1;
        if e.1 > 0 {
            return;
        }
        let i = e.0;
        self.at.remove(&id);
        self.all.swap_remove(i);
        if let Some(moved) = self.all.get(i) {
            if let Some(m) = self.at.get_mut(&moved.id()) {
                m.0 = i;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Destination> {
        self.all.iter()
    }
}
