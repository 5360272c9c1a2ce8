//! Fanout exchange: every binding, whatever the key; each destination once.

use super::dest_set::DestSet;
use super::{Binding, Destination, RouteInput, Router};

#[derive(Default)]
pub struct FanoutRouter {
    all: DestSet,
}

impl Router for FanoutRouter {
    fn bind(&mut self, b: &Binding) {
        self.all.insert(&b.destination);
    }

    fn unbind(&mut self, b: &Binding) {
        self.all.remove(&b.destination);
    }

    fn route(&self, _input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination)) {
        self.all.iter().for_each(out);
    }
}
