//! Topic exchange: binding keys are dot-separated words where `*` matches exactly one word
//! and `#` matches zero or more. Bindings live in a trie keyed by word, so a publish walks
//! the routing key's words once instead of testing every binding.
//! As in RabbitMQ, the empty key has zero words, and `a..b` has an empty middle word.

use std::collections::HashMap;

use super::{Binding, Destination, RouteInput, Router};

#[derive(Default)]
struct Node {
    words: HashMap<String, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    /// Bindings whose key ends at this node (one entry per binding).
    here: Vec<Destination>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.here.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

#[derive(Default)]
pub struct TopicRouter {
    root: Node,
}

fn words(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    }
}

fn insert(node: &mut Node, words: &[&str], dest: &Destination) {
    let Some((first, rest)) = words.split_first() else {
        node.here.push(dest.clone());
        return;
    };
    let child = match *first {
        "*" => node.star.get_or_insert_with(Default::default),
        "#" => node.hash.get_or_insert_with(Default::default),
        w => node.words.entry(w.to_string()).or_default(),
    };
    insert(child, rest, dest);
}

/// Removes one entry for `dest` at the end of `words`, pruning empty branches.
fn remove(node: &mut Node, words: &[&str], dest: &Destination) {
    let Some((first, rest)) = words.split_first() else {
        if let Some(i) = node.here.iter().position(|d| d.same(dest)) {
            node.here.swap_remove(i);
        }
        return;
    };
    match *first {
        "*" => {
            if let Some(c) = node.star.as_mut() {
                remove(c, rest, dest);
                if c.is_empty() {
                    node.star = None;
                }
            }
        }
        "#" => {
            if let Some(c) = node.hash.as_mut() {
                remove(c, rest, dest);
                if c.is_empty() {
                    node.hash = None;
                }
            }
        }
        w => {
            if let Some(c) = node.words.get_mut(w) {
                remove(c, rest, dest);
                if c.is_empty() {
                    node.words.remove(w);
                }
            }
        }
    }
}

fn walk(node: &Node, words: &[&str], out: &mut dyn FnMut(&Destination)) {
    if words.is_empty() {
        node.here.iter().for_each(&mut *out);
    }
    if let Some(h) = &node.hash {
        // `#` swallows 0..=n words.
        for skip in 0..=words.len() {
            walk(h, &words[skip..], out);
        }
    }
    if let Some((first, rest)) = words.split_first() {
        if let Some(c) = node.words.get(*first) {
            walk(c, rest, out);
        }
        if let Some(s) = &node.star {
            walk(s, rest, out);
        }
    }
}

impl Router for TopicRouter {
    fn bind(&mut self, b: &Binding) {
        insert(&mut self.root, &words(&b.routing_key), &b.destination);
    }

    fn unbind(&mut self, b: &Binding) {
        remove(&mut self.root, &words(&b.routing_key), &b.destination);
    }

    fn route(&self, input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination)) {
        walk(&self.root, &words(input.routing_key), out);
    }
}
