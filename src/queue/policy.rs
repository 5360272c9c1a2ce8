//! The policies a queue runs with: its arguments met with them (`QueueArgs::with_policy`),
//! replaced under the queue's lock whenever a policy changes (`vhost/policies.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Queue;
use crate::policy::Applied;

impl Queue {
    /// Runs the queue with the policies that now apply (at declare, and whenever a policy
    /// changes): the new limits take effect at once, as RabbitMQ's do (a shorter length
    /// limit drops from the head, a new `expires` starts counting).
    pub fn apply_policy(self: &Arc<Self>, applied: Arc<Applied>) {
        let args = Arc::new(
            self.declared
                .with_policy(self.overflow_declared, &applied.values),
        );
        let mut st = self.state.lock();
        if st.applied.same_as(&applied) {
            return;
        }
        self.consumer_timeout
            .store(args.consumer_timeout.unwrap_or(0), Ordering::Relaxed);
        st.args = if *args == *self.declared {
            self.declared.clone()
        } else {
            args
        };
        st.applied = applied;
        self.enforce_drop_head(&mut st);
        self.start_expires_watch(&mut st);
        self.unlock(st);
    }

    /// The policies that apply now.
    pub fn policy(&self) -> Arc<Applied> {
        self.state.lock().applied.clone()
    }

    /// The consumer timeout in ms (`x-consumer-timeout` or a policy's), if any.
    pub fn consumer_timeout(&self) -> Option<u64> {
        Some(self.consumer_timeout.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }
}
