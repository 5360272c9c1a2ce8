//! The settled (acked, rejected, expired, purged) seqs of one log segment, as sorted
//! half-open ranges: consumers settle mostly in order, so a segment's acks are one range or
//! a few, whatever its size.

/// Sorted, disjoint, non-adjacent half-open ranges of seqs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    ranges: Vec<(u64, u64)>,
}

impl Settled {
    /// Adds `seq`; false if it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        // The first range that ends at or after `seq` (could hold it or follow it).
        let i = self.ranges.partition_point(|&(_, to)| to < seq);
        match self.ranges.get(i).copied() {
            Some((from, to)) if from <= seq && seq < to => return false,
            // Extends the range that ends right at `seq`.
            Some((from, to)) if to == seq => {
                self.ranges[i] = (from, seq + 1);
                if let Some(&(nf, nt)) = self.ranges.get(i + 1) {
                    if nf == seq + 1 {
                        self.ranges[i] = (from, nt);
                        self.ranges.remove(i + 1);
                    }
                }
            }
            // Extends the range that starts right after it.
            Some((from, to)) if from == seq + 1 => self.ranges[i] = (seq, to),
            _ => self.ranges.insert(i, (seq, seq + 1)),
        }
        true
    }

    /// Adds every seq in `from..to`.
    pub fn insert_range(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        let lo = self.ranges.partition_point(|&(_, t)| t < from);
        let hi = self.ranges.partition_point(|&(f, _)| f <= to);
        let (mut f, mut t) = (from, to);
        if lo < hi {
            f = f.min(self.ranges[lo].0);
            t = t.max(self.ranges[hi - 1].1);
        }
        self.ranges.splice(lo..hi, [(f, t)]);
    }

    pub fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, to)| to <= seq);
        self.ranges.get(i).is_some_and(|&(from, _)| from <= seq)
    }

    /// The first seq at or after `seq` that is not settled.
    pub fn next_unsettled(&self, seq: u64) -> u64 {
        let i = self.ranges.partition_point(|&(_, to)| to <= seq);
        match self.ranges.get(i) {
            Some(&(from, to)) if from <= seq => to,
            _ => seq,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Everything of `other` added (recovery merges a queue's segments).
    pub fn extend(&mut self, other: &Settled) {
        for &(f, t) in &other.ranges {
            self.insert_range(f, t);
        }
    }

    /// `n` then `n` pairs of big-endian u64s.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.ranges.len() as u32).to_be_bytes());
        for &(f, t) in &self.ranges {
            out.extend_from_slice(&f.to_be_bytes());
            out.extend_from_slice(&t.to_be_bytes());
        }
    }

    /// The inverse of [`Settled::encode`]; `None` if malformed (unsorted, overlapping, short).
    pub fn decode(b: &[u8]) -> Option<(Settled, &[u8])> {
        let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let body = b.get(4..4 + n.checked_mul(16)?)?;
        let mut ranges = Vec::with_capacity(n);
        let mut last = None;
        for c in body.chunks_exact(16) {
            let f = u64::from_be_bytes(c[..8].try_into().ok()?);
            let t = u64::from_be_bytes(c[8..].try_into().ok()?);
            if f >= t || last.is_some_and(|l| f <= l) {
                return None;
            }
            last = Some(t);
            ranges.push((f, t));
        }
        Some((Settled { ranges }, &b[4 + n * 16..]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Settled;

    #[test]
    fn in_order_settles_stay_one_range_and_holes_are_kept() {
        let mut s = Settled::default();
        for seq in 10..1000 {
            assert!(s.insert(seq));
        }
        assert!(!s.insert(500));
        assert_eq!(s.ranges, vec![(10, 1000)]);
        assert!(s.insert(1002));
        assert!(s.insert(5));
        assert!(s.insert(1000));
        assert_eq!(s.ranges, vec![(5, 6), (10, 1001), (1002, 1003)]);
        // Filling the hole joins the ranges on both sides.
        assert!(s.insert(1001));
        assert_eq!(s.ranges, vec![(5, 6), (10, 1003)]);
        assert!(s.contains(5) && !s.contains(6) && s.contains(1002) && !s.contains(1003));
        assert_eq!(s.next_unsettled(10), 1003);
        assert_eq!(s.next_unsettled(7), 7);
        s.insert_range(0, 20);
        assert_eq!(s.ranges, vec![(0, 1003)]);
        let mut b = Vec::new();
        s.encode(&mut b);
        assert_eq!(Settled::decode(&b).unwrap().0, s);
        assert!(Settled::decode(&b[..b.len() - 1]).is_none());
    }

    #[test]
    fn settling_in_reverse_merges() {
        let mut s = Settled::default();
        for seq in (0..100).rev() {
            assert!(s.insert(seq));
        }
        assert_eq!(s.ranges, vec![(0, 100)]);
        let mut s = Settled::default();
        for seq in (0..100).step_by(2) {
            s.insert(seq);
        }
        for seq in (1..100).step_by(2) {
            s.insert(seq);
        }
        assert_eq!(s.ranges, vec![(0, 100)]);
    }
}
