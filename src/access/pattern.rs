//! A permission's regular expression, matched as RabbitMQ matches it: an unanchored search
//! of the resource name, the empty pattern meaning `^$` (nothing but the empty name).
//!
//! RabbitMQ uses PCRE; Warren uses the `regex` crate, whose matching is linear in the name
//! (no backtracking on a pattern an administrator wrote). Patterns it cannot compile (back
//! references, look-around, past the size limit) are refused when they are set.

use regex::{Regex, RegexBuilder};

/// Compiled programs bigger than this are refused (a pattern is a few dozen bytes).
const SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// A permission's pattern: the empty one means `^$`.
    pub fn new(source: &str) -> Result<Pattern, BadPattern> {
        let effective = if source.is_empty() { "^$" } else { source };
        Self::compile(source, effective)
    }

    /// A pattern as written, the empty one matching every name (a policy's, which RabbitMQ
    /// runs through `re:run` as it is).
    pub fn as_written(source: &str) -> Result<Pattern, BadPattern> {
        Self::compile(source, source)
    }

    fn compile(source: &str, effective: &str) -> Result<Pattern, BadPattern> {
        let regex = RegexBuilder::new(effective)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| BadPattern {
                pattern: source.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as it was given (what an export writes back).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unanchored_search_and_empty_means_nothing() {
        assert!(Pattern::new(".*").unwrap().matches("anything"));
        assert!(Pattern::new("^amq\\.gen").unwrap().matches("amq.gen-x"));
        assert!(Pattern::new("gen").unwrap().matches("amq.gen-x"));
        assert!(!Pattern::new("^gen").unwrap().matches("amq.gen-x"));
        let none = Pattern::new("").unwrap();
        assert!(!none.matches("q"));
        assert!(!none.matches("amq.default"));
    }

    #[test]
    fn backtracking_constructs_are_refused() {
        assert!(Pattern::new("(a)\\1").is_err());
        assert!(Pattern::new("(?=a)").is_err());
        assert!(Pattern::new("(").is_err());
    }
}
