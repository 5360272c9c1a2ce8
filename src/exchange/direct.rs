//! Direct exchange: the routing key equals the binding key.

use std::collections::HashMap;

use super::{Binding, Destination, RouteInput, Router};

#[derive(Default)]
pub struct DirectRouter {
    by_key: HashMap<String, Vec<Destination>>,
}

impl Router for DirectRouter {
    fn bind(&mut self, b: &Binding) {
        self.by_key
            .entry(b.routing_key.clone())
            .or_default()
            .push(b.destination.clone());
    }

    fn unbind(&mut self, b: &Binding) {
        if let Some(v) = self.by_key.get_mut(&b.routing_key) {
            if let Some(i) = v.iter().position(|d| d.same(&b.destination)) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.by_key.remove(&b.routing_key);
            }
        }
    }

    fn route(&self, input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination)) {
        if let Some(v) = self.by_key.get(input.routing_key) {
            v.iter().for_each(out);
        }
    }
}
