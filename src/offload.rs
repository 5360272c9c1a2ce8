//! Long synchronous work on a runtime worker, without stalling the tasks that share it.

/// Runs `f` where it does not hold up the connections on this thread: inside
/// `block_in_place` on a multi-threaded runtime (which moves this worker's other tasks,
/// even one just woken into its LIFO slot, to another thread meanwhile); as is elsewhere.
pub(crate) fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
