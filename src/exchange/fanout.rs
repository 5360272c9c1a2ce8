//! Fanout exchange: every binding, whatever the key.

use super::{Binding, Destination, RouteInput, Router};

#[derive(Default)]
pub struct FanoutRouter {
    all: Vec<Destination>,
}

impl Router for FanoutRouter {
    fn bind(&mut self, b: &Binding) {
        self.all.push(b.destination.clone());
    }

    fn unbind(&mut self, b: &Binding) {
        if let Some(i) = self.all.iter().position(|d| d.same(&b.destination)) {
            self.all.swap_remove(i);
        }
    }

    fn route(&self, _input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination)) {
        self.all.iter().for_each(out);
    }
}
