//! Headers exchange: a binding's arguments are matched against the message's headers.
//! `x-match` = `all` (default) or `any`; `all-with-x` / `any-with-x` also compare arguments
//! whose names start with `x-` (which the plain modes skip). A binding argument of type void
//! only asks for the header to be present.

use amq_protocol::types::{AMQPValue, FieldTable};

use std::collections::HashMap;

use super::{Binding, BindingId, Destination, RouteInput, Router};
use crate::args;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

struct Entry {
    mode: Mode,
    with_x: bool,
    args: FieldTable,
    dest: Destination,
}

#[derive(Default)]
pub struct HeadersRouter {
    /// By binding, so unbind costs the same whatever the count (routing tests them all).
    entries: HashMap<BindingId, Entry>,
}

fn mode_of(t: &FieldTable) -> (Mode, bool) {
    match args::get_str(t, "x-match") {
        Some(b"any") => (Mode::Any, false),
        Some(b"any-with-x") => (Mode::Any, true),
        Some(b"all-with-x") => (Mode::All, true),
        _ => (Mode::All, false),
    }
}

/// RabbitMQ refuses a binding whose `x-match` is not one of the four modes (406).
pub fn validate_binding(t: &FieldTable) -> Result<(), BadMatch> {
    match args::get(t, "x-match") {
        None => Ok(()),
        Some(AMQPValue::LongString(s)) => match s.as_bytes() {
            b"all" | b"any" | b"all-with-x" | b"any-with-x" => Ok(()),
            other => Err(BadMatch::Value(String::from_utf8_lossy(other).into_owned())),
        },
        Some(other) => Err(BadMatch::Type(format!("{other:?}"))),
    }
}

/// A headers binding's `x-match` RabbitMQ refuses (406, in its words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMatch {
    #[error(
        "Invalid x-match field value <<\"{0}\">>; expected all, any, all-with-x, or any-with-x"
    )]
    Value(String),
    #[error("Invalid x-match field type {0}; expected longstr")]
    Type(String),
}

fn matches(e: &Entry, headers: Option<&FieldTable>) -> bool {
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty);
    let mut any_hit = false;
    for (k, want) in e.args.inner() {
        let key = k.as_str();
        if key == "x-match" || (!e.with_x && key.starts_with("x-")) {
            continue;
        }
        let hit = match headers.inner().get(key) {
            None => false,
            Some(_) if matches!(want, AMQPValue::Void) => true,
            Some(have) => args::loosely_equal(want, have),
        };
        match e.mode {
            Mode::All if !hit => return false,
            Mode::Any if hit => return true,
            _ => {}
        }
        any_hit |= hit;
    }
    match e.mode {
        Mode::All => true,
        Mode::Any => any_hit,
    }
}

impl Router for HeadersRouter {
    fn bind(&mut self, b: &Binding) {
        let (mode, with_x) = mode_of(&b.arguments);
        self.entries.insert(
            b.id(),
            Entry {
                mode,
                with_x,
                args: b.arguments.clone(),
                dest: b.destination.clone(),
            },
        );
    }

    fn unbind(&mut self, b: &Binding) {
        self.entries.remove(&b.id());
    }

    fn route(&self, input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination)) {
        if self.entries.is_empty() {
            return;
        }
        let headers = (input.headers)();
        for e in self.entries.values() {
            if matches(e, headers.as_ref()) {
                out(&e.dest);
            }
        }
    }
}
