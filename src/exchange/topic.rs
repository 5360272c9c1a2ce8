//! Topic exchange: binding keys are dot-separated words where `*` matches exactly one word
//! and `#` matches zero or more. Bindings live in a trie keyed by word, so a publish walks
//! the routing key's words once instead of testing every binding.
//! As in RabbitMQ, the empty key has zero words, and `a..b` has an empty middle word.
//!
//! The walk is a set of states (trie node, words consumed), each visited once, so its cost
//! is bounded by (trie nodes reached) × (words + 1) whatever the bindings: trying every way
//! each `#` can take words instead is exponential in the number of `#`s (a binding
//! `#.#.#.#.#.#.#.nomatch` and a 60-word key took seconds per publish that way).

use std::collections::{HashMap, HashSet};

use super::dest_set::DestSet;
use super::{Binding, Destination, RouteInput, Router};

#[derive(Default)]
struct Node {
    words: HashMap<String, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    /// Reached by a `#`: may swallow any number of further words and stay here.
    absorbs: bool,
    /// Destinations of the bindings whose key ends at this node.
    here: DestSet,
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
        node.here.insert(dest);
        return;
    };
    let child = match *first {
        "*" => node.star.get_or_insert_with(Default::default),
        "#" => node.hash.get_or_insert_with(|| {
            Box::new(Node {
                absorbs: true,
                ..Node::default()
            })
        }),
        w => node.words.entry(w.to_string()).or_default(),
    };
    insert(child, rest, dest);
}

/// Removes one binding to `dest` at the end of `words`, pruning empty branches.
fn remove(node: &mut Node, words: &[&str], dest: &Destination) {
    let Some((first, rest)) = words.split_first() else {
        node.here.remove(dest);
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

/// The (node, words consumed) states already visited in one walk: a short list in the
/// common case, a hash set once a walk has many.
enum Seen {
    Few(Vec<(usize, usize)>),
    Many(HashSet<(usize, usize)>),
}

impl Seen {
    /// True the first time a state is offered.
    fn first(&mut self, state: (usize, usize)) -> bool {
        match self {
            Seen::Few(v) => {
                if v.contains(&state) {
                    return false;
                }
                if v.len() < 32 {
                    v.push(state);
                    return true;
                }
                let mut set: HashSet<(usize, usize)> = v.drain(..).collect();
                set.insert(state);
                *self = Seen::Many(set);
                true
            }
            Seen::Many(s) => s.insert(state),
        }
    }
}

fn walk(root: &Node, words: &[&str], out: &mut dyn FnMut(&Destination)) {
    let mut stack: Vec<(&Node, usize)> = vec![(root, 0)];
    let mut seen = Seen::Few(Vec::new());
    while let Some((node, i)) = stack.pop() {
        if !seen.first((node as *const Node as usize, i)) {
            continue;
        }
        if i == words.len() {
            node.here.iter().for_each(&mut *out);
        }
        // `#` takes no word...
        if let Some(h) = &node.hash {
            stack.push((h, i));
        }
        if let Some(word) = words.get(i) {
            // ... or one more.
            if node.absorbs {
                stack.push((node, i + 1));
            }
            if let Some(c) = node.words.get(*word) {
                stack.push((c, i + 1));
            }
            if let Some(s) = &node.star {
                stack.push((s, i + 1));
            }
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

#[cfg(test)]
mod tests {
    use amq_protocol::types::FieldTable;

    use super::*;
    use crate::exchange::{Exchange, ExchangeConfig, ExchangeKind};

    /// Which of `patterns` match `key`, through the real router (each pattern bound to an
    /// exchange named after its index).
    fn matches(patterns: &[&str], key: &str) -> Vec<usize> {
        let mut r = TopicRouter::default();
        for (i, p) in patterns.iter().enumerate() {
            let dest = Destination::Exchange(Exchange::new(ExchangeConfig {
                durable: false,
                ..ExchangeConfig::durable(i as u64, &i.to_string(), ExchangeKind::Fanout)
            }));
            r.bind(&Binding {
                destination: dest,
                routing_key: p.to_string(),
                arguments: FieldTable::default(),
            });
        }
        let no_headers = || None;
        let input = RouteInput {
            routing_key: key,
            headers: &no_headers,
        };
        let mut hit = Vec::new();
        r.route(&input, &mut |d| {
            if let Destination::Exchange(e) = d {
                hit.push(e.id as usize);
            }
        });
        hit.sort();
        hit
    }

    #[test]
    fn rabbitmq_topic_semantics() {
        // (pattern, key, matches), RabbitMQ's rules.
        let cases: &[(&str, &str, bool)] = &[
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.b.c", true),
            ("#", "", true),
            ("#", "a.b", true),
            ("*", "", false),
            ("a.#", "a", true),
            ("#.a", "a", true),
            ("#.#", "", true),
            ("*.#.*", "a", false),
            ("*.#.*", "a.b", true),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("#.b.#", "a.b.c", true),
            ("#.b.#", "a.c", false),
        ];
        for &(p, k, want) in cases {
            assert_eq!(!matches(&[p], k).is_empty(), want, "{p:?} vs {k:?}");
        }
    }

    #[test]
    fn each_binding_is_reported_once_however_many_paths_match() {
        // `#.#` matches "a.b" in three ways; `a.#.#` in two.
        assert_eq!(matches(&["#.#", "a.#.#", "*.b"], "a.b"), vec![0, 1, 2]);
    }

    #[test]
    fn many_hashes_and_a_long_key_stay_polynomial() {
        // Exponential in the hashes before (30 of them: no end in sight); now a few thousand
        // states.
        let pattern = vec!["#"; 30].join(".") + ".nomatch";
        let key = (0..120)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(".");
        assert!(matches(&[&pattern], &key).is_empty());
        let hit = vec!["#"; 30].join(".") + ".w119";
        assert_eq!(matches(&[&pattern, &hit], &key), vec![1]);
    }
}
