//! Bounds on field tables and arrays from the wire, checked before anything parses them.
//!
//! amq-protocol's `parse_field_table` recurses once per nesting level with no limit, so a
//! 17 KB frame nesting tables 2,500 deep overflows the stack. [`check_table`] walks the
//! encoded bytes with an explicit stack (its own depth is bounded by [`MAX_DEPTH`], whatever
//! the input claims) and refuses a table nested deeper than [`MAX_DEPTH`] or holding more
//! than [`MAX_VALUES`] values in all. No client comes near either: a RabbitMQ client's
//! deepest table is `capabilities` inside client-properties (depth 2).
//!
//! It accepts exactly the value types amq-protocol parses (RabbitMQ's tags: `s` is a short
//! int, `l`/`L` a long long int, `x` a byte array, `V` void), so whatever passes here either
//! parses or fails amq-protocol's own checks (bad UTF-8 in a key, say) with a bounded cost.

use std::fmt;

/// Tables and arrays nested at most this deep (the outermost table is depth 1).
pub const MAX_DEPTH: usize = 64;
/// Values (table entries and array elements, at every depth) in one table at most.
pub const MAX_VALUES: usize = 65_536;

/// Why a table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    TooDeep,
    TooManyValues,
    /// Cut short, a length past its container's end, or an unknown value type.
    Malformed,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::TooDeep => write!(f, "field table nested deeper than {MAX_DEPTH} levels"),
            TableError::TooManyValues => {
                write!(f, "field table with more than {MAX_VALUES} values")
            }
            TableError::Malformed => write!(f, "malformed field table"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Table,
    Array,
}

/// The size of a fixed-size value of type `tag`, or None for variable-size and unknown ones.
fn fixed_size(tag: u8) -> Option<usize> {
    Some(match tag {
        b'V' => 0,
        b't' | b'b' | b'B' => 1,
        b's' | b'U' | b'u' => 2,
        b'I' | b'i' | b'f' => 4,
        b'D' => 5,
        b'l' | b'L' | b'd' | b'T' => 8,
        _ => return None,
    })
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, TableError> {
    let s = b.get(at..at + 4).ok_or(TableError::Malformed)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Checks the encoded table at the start of `b` (its 4-byte length first) against the
/// bounds; returns the bytes it takes. Linear in its length, no recursion.
pub fn check_table(b: &[u8]) -> Result<usize, TableError> {
    let len = u32_at(b, 0)?;
    let end = 4usize.checked_add(len).ok_or(TableError::Malformed)?;
    if end > b.len() {
        return Err(TableError::Malformed);
    }
    let mut stack: Vec<(usize, Kind)> = Vec::with_capacity(4);
    stack.push((end, Kind::Table));
    let mut pos = 4;
    let mut values = 0usize;
    while let Some(&(limit, kind)) = stack.last() {
        if pos == limit {
            stack.pop();
            continue;
        }
        if kind == Kind::Table {
            let key = *b.get(pos).ok_or(TableError::Malformed)? as usize;
            pos += 1 + key;
        }
        let tag = *b.get(pos).ok_or(TableError::Malformed)?;
        pos += 1;
        values += 1;
        if values > MAX_VALUES {
            return Err(TableError::TooManyValues);
        }
        match tag {
            b'S' | b'x' => pos += 4 + u32_at(b, pos)?,
            b'F' | b'A' => {
                let inner = u32_at(b, pos)?;
                pos += 4;
                let inner_end = pos.checked_add(inner).ok_or(TableError::Malformed)?;
                if inner_end > limit {
                    return Err(TableError::Malformed);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(TableError::TooDeep);
                }
                stack.push((
                    inner_end,
                    if tag == b'F' {
                        Kind::Table
                    } else {
                        Kind::Array
                    },
                ));
                continue;
            }
            t => pos += fixed_size(t).ok_or(TableError::Malformed)?,
        }
        if pos > limit {
            return Err(TableError::Malformed);
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};

    fn encode(t: &FieldTable) -> Vec<u8> {
        let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
        let ctx = amq_protocol::types::generation::gen_field_table(t)(ctx).unwrap();
        ctx.into_inner().0
    }

    /// A table nested `depth` deep (the outermost counts as 1), as raw bytes.
    fn nested(depth: usize, array: bool) -> Vec<u8> {
        let mut inner: Vec<u8> = 0u32.to_be_bytes().to_vec();
        for _ in 1..depth {
            let mut next = Vec::new();
            let body: Vec<u8> = if array {
                let mut v = vec![b'F'];
                v.extend_from_slice(&inner);
                let mut a = vec![1, b'a', b'A'];
                a.extend_from_slice(&(v.len() as u32).to_be_bytes());
                a.extend_from_slice(&v);
                a
            } else {
                let mut v = vec![1, b'k', b'F'];
                v.extend_from_slice(&inner);
                v
            };
            next.extend_from_slice(&(body.len() as u32).to_be_bytes());
            next.extend_from_slice(&body);
            inner = next;
        }
        inner
    }

    #[test]
    fn real_tables_pass_and_report_their_length() {
        let mut caps = FieldTable::default();
        caps.insert("publisher_confirms".into(), AMQPValue::Boolean(true));
        let mut t = FieldTable::default();
        t.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        t.insert(
            "product".into(),
            AMQPValue::LongString(LongString::from(&b"pika"[..])),
        );
        t.insert("n".into(), AMQPValue::LongLongInt(-5));
        t.insert("d".into(), AMQPValue::Double(1.5));
        let mut a = FieldArray::default();
        a.push(AMQPValue::ShortInt(3));
        a.push(AMQPValue::Void);
        a.push(AMQPValue::Timestamp(9));
        t.insert("a".into(), AMQPValue::FieldArray(a));
        let mut b = encode(&t);
        let len = b.len();
        b.extend_from_slice(b"trailing");
        assert_eq!(check_table(&b), Ok(len));
    }

    #[test]
    fn depth_is_bounded_for_tables_and_arrays() {
        for array in [false, true] {
            // An array level adds one to the depth: count levels as the checker does.
            let ok = if array { MAX_DEPTH / 2 } else { MAX_DEPTH };
            assert!(
                check_table(&nested(ok, array)).is_ok(),
                "{ok} deep, array {array}"
            );
            assert_eq!(
                check_table(&nested(2_500, array)),
                Err(TableError::TooDeep),
                "array {array}"
            );
        }
        assert_eq!(
            check_table(&nested(MAX_DEPTH + 1, false)),
            Err(TableError::TooDeep)
        );
    }

    #[test]
    fn too_many_values_is_refused() {
        let body = vec![b'V'; MAX_VALUES + 1];
        let mut arr = vec![0, 0, 0, 0, 1, b'a', b'A'];
        arr.extend_from_slice(&(body.len() as u32).to_be_bytes());
        arr.extend_from_slice(&body);
        let len = (arr.len() - 4) as u32;
        arr[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(check_table(&arr), Err(TableError::TooManyValues));
    }

    #[test]
    fn malformed_tables_are_errors_at_every_cut() {
        let mut t = FieldTable::default();
        let mut inner = FieldTable::default();
        inner.insert("x".into(), AMQPValue::LongInt(1));
        t.insert("t".into(), AMQPValue::FieldTable(inner));
        t.insert(
            "s".into(),
            AMQPValue::LongString(LongString::from(&b"abc"[..])),
        );
        let b = encode(&t);
        for n in 0..b.len() {
            assert!(check_table(&b[..n]).is_err(), "cut at {n}");
        }
        // An unknown type, and an inner length past the outer end.
        assert_eq!(
            check_table(&[0, 0, 0, 3, 1, b'k', b'Z']),
            Err(TableError::Malformed)
        );
        assert_eq!(
            check_table(&[0, 0, 0, 7, 1, b'k', b'F', 0, 0, 0, 9]),
            Err(TableError::Malformed)
        );
    }
}
