//! Direct exchange: the routing key equals the binding key. A hash map from key to the set
//! of destinations, so bind, unbind and route cost the same with one binding or a million.

use std::collections::HashMap;

use super::dest_set::DestSet;
use super::{Binding, Destination, RouteInput, Router};

#[derive(Default)]
pub struct DirectRouter {
    by_key: HashMap<String, DestSet>,
}

impl Router for DirectRouter {
    fn bind(&mut self, b: &Binding) {
        self.by_key
            .entry(b.routing_key.clone())
            .or_default()
            .insert(&b.destination);
    }

    fn unbind(&mut self, b: &Binding) {
        if let Some(set) = self.by_key.get_mut(&b.routing_key) {
            set.remove(&b.destination);
            if set.is_empty() {
                self.by_key.remove(&b.routing_key);
            }
        }
    }

    fn route(&self, input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination)) {
        if let Some(set) = self.by_key.get(input.routing_key) {
            set.iter().for_each(out);
        }
    }
}
