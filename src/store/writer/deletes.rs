//! Prefix deletes, which must see the database as it is (the writer applies what came
//! before them first). A prefix delete (a gone queue's or exchange's records) takes at
//! most [`DELETE_CHUNK`] records per commit and carries the rest to the next ones, which the
//! writer runs without waiting for new ops: deleting a queue with 10,000 bindings must not
//! hold every other connection's confirm behind one long commit (80 ms measured). A barrier
//! or a stop finishes them at once.

use super::{Op, Writer};

/// Records a prefix delete removes per commit (about 3 ms of sled's time here).
pub(super) const DELETE_CHUNK: usize = 512;

impl Writer {
    /// Up to `limit` records under `prefix`; the rest is carried to the next commit.
    pub(super) fn delete_prefix(&mut self, prefix: &[u8], limit: usize) {
        let mut more = false;
        if self.apply() {
            if let Some(db) = self.db.clone() {
                more = self.delete_records(db.scan_prefix(prefix), limit);
            }
        }
        if more && self.ok {
            // Nothing later falls under the prefix (see `Op::DeletePrefix`): the rest may
            // follow the ops after it.
            self.carry.push(Op::DeletePrefix(prefix.to_vec()));
        }
    }

    /// A barrier or a stop answers for everything sent before it: carried deletes too.
    pub(super) fn finish_carried(&mut self) {
        for op in std::mem::take(&mut self.carry) {
            if let Op::DeletePrefix(ref prefix) = op {
                self.delete_prefix(prefix, usize::MAX);
            }
            self.kept.push(op);
        }
    }

    /// Deletes the records `items` yields, `limit` at most; true if it stopped at `limit`
    /// with more to come.
    fn delete_records(
        &mut self,
        items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        limit: usize,
    ) -> bool {
        let mut batch = sled::Batch::default();
        let mut items = items.peekable();
        let mut n = 0;
        while n < limit {
            let Some(item) = items.next() else { break };
            n += 1;
            match item {
                Ok((k, _)) => batch.remove(k),
                Err(e) => {
                    self.sled_failed(format_args!("store scan failed: {e}"));
                    return false;
                }
            }
        }
        let more = n == limit && items.peek().is_some();
        let Some(db) = self.db.as_ref() else {
            return false;
        };
        self.applied = true;
        match db.apply_batch(batch) {
            Ok(()) => {
                self.unsynced = true;
                more
            }
            Err(e) => {
                self.sled_failed(format_args!("store delete failed: {e}"));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::{Duration, Instant};

    use amq_protocol::types::FieldTable;

    use super::DELETE_CHUNK;
    use crate::store::records::{self, DestKind};
    use crate::store::{Store, StoreConfig};

    fn bindings_to(store: &Store, qid: u64) -> usize {
        let db = store.db.read().clone().unwrap();
        db.scan_prefix(records::bindings_to_prefix(DestKind::Queue, qid))
            .count()
    }

    /// A queue with `n` bindings (from exchange 1), and another queue (`qid + 1`) with one.
    fn store_with_bindings(qid: u64, n: usize) -> (tempfile::TempDir, std::sync::Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            cache_bytes: 16 << 20,
        };
        let (store, _) = Store::open(dir.path(), &config, &|_| 0).unwrap();
        let none = FieldTable::default();
        for i in 0..n {
            store.put_binding(DestKind::Queue, qid, 1, &format!("k{i}"), &none);
        }
        store.put_binding(DestKind::Queue, qid + 1, 1, "other", &none);
        assert!(store.sync());
        assert_eq!(bindings_to(&store, qid), n);
        (dir, store)
    }

    #[test]
    fn a_prefix_delete_over_several_commits_finishes_without_more_ops() {
        let (_dir, store) = store_with_bindings(5, 3 * DELETE_CHUNK + 7);
        store.delete_queue(5, true);
        // No barrier and nothing else sent: the writer must carry on by itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        while bindings_to(&store, 5) > 0 {
            assert!(Instant::now() < deadline, "{} left", bindings_to(&store, 5));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(bindings_to(&store, 6), 1, "another queue's binding stays");
    }

    #[test]
    fn a_barrier_after_a_prefix_delete_covers_all_of_it() {
        let (_dir, store) = store_with_bindings(5, 3 * DELETE_CHUNK + 7);
        store.delete_queue(5, true);
        assert!(store.sync());
        assert_eq!(bindings_to(&store, 5), 0);
        assert_eq!(bindings_to(&store, 6), 1);
    }
}
