//! The bindings that lead to one destination, by source exchange: the vhost's index by
//! destination (see `bindings`). Most destinations have one binding (a queue bound by its
//! own name), so a few links are a vector to scan; past [`SCAN_MAX`] they move into a hash
//! map, so that adding or removing one costs the same whatever the count. A hash map for a
//! single link took ~340 bytes per queue (100,000 queues bound to amq.direct: 34 MB).

use std::collections::HashMap;
use std::sync::Arc;

use crate::exchange::{BindingId, Exchange};

/// Past this many links the set is a hash map instead of a vector.
const SCAN_MAX: usize = 16;

/// A link's key: the source exchange's id and the binding's identity.
pub(super) type LinkKey = (u64, BindingId);

pub(super) enum Links {
    Few(Vec<(LinkKey, Arc<Exchange>)>),
    Many(HashMap<LinkKey, Arc<Exchange>>),
}

impl Default for Links {
    fn default() -> Self {
        Links::Few(Vec::new())
    }
}

impl Links {
    pub(super) fn insert(&mut self, key: LinkKey, ex: Arc<Exchange>) {
        match self {
            Links::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _)| *k == key) {
                    slot.1 = ex;
                    return;
                }
                if v.len() < SCAN_MAX {
                    // One at a time: a first push would make room for four (320 bytes).
                    v.reserve_exact(1);
                    v.push((key, ex));
                    return;
                }
                let mut map: HashMap<LinkKey, Arc<Exchange>> =
                    std::mem::take(v).into_iter().collect();
                map.insert(key, ex);
                *self = Links::Many(map);
            }
            Links::Many(m) => {
                m.insert(key, ex);
            }
        }
    }

    pub(super) fn remove(&mut self, key: &LinkKey) {
        match self {
            Links::Few(v) => {
                if let Some(i) = v.iter().position(|(k, _)| k == key) {
                    v.swap_remove(i);
                }
            }
            Links::Many(m) => {
                m.remove(key);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Links::Few(v) => v.is_empty(),
            Links::Many(m) => m.is_empty(),
        }
    }

    pub(super) fn to_vec(&self) -> Vec<(LinkKey, Arc<Exchange>)> {
        match self {
            Links::Few(v) => v.clone(),
            Links::Many(m) => m.iter().map(|(k, e)| (k.clone(), e.clone())).collect(),
        }
    }

    pub(super) fn into_vec(self) -> Vec<(LinkKey, Arc<Exchange>)> {
        match self {
            Links::Few(v) => v,
            Links::Many(m) => m.into_iter().collect(),
        }
    }
}
