//! A bounded pool for fetches that real clients run at once: the image models' every
//! image, composefs's objects 8 at a time. Scoped threads rather than rayon's pool,
//! because the work waits on a link or a disk, not on the 2 cores, and its degree of
//! parallelism is the model's, not the machine's.

use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `f` on every item on at most `threads` threads, items taken in order; returns
/// the results in item order, or the first error in item order. After an error the
/// threads stop before their next item; the items already running finish.
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..items.len().clamp(1, threads.max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let outcome = f(item);
                    failed.fetch_or(outcome.is_err(), Ordering::SeqCst);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                }
            });
        }
    });
    // Items are taken in order, so every item never started comes after the one that
    // failed: the error is met first.
    let mut out = Vec::with_capacity(items.len());
    for slot in results {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(outcome) => out.push(outcome?),
            None => bail!("stopped after an earlier error"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn results_come_in_item_order_and_at_most_threads_run_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u64> = (0..40).collect();
        let out = in_parallel(&items, 4, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(i * 10)
        })
        .unwrap();
        assert_eq!(out, items.iter().map(|i| i * 10).collect::<Vec<_>>());
        let most = most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most} at once");
    }

    #[test]
    fn the_first_error_in_item_order_is_returned_and_the_rest_stop() {
        let started = AtomicUsize::new(0);
        let items: Vec<u32> = (0..1000).collect();
        let err = in_parallel(&items, 2, |&i| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 3 {
                bail!("item {i} failed");
            }
            // Slow enough that the other thread cannot take every item while the
            // failing one is descheduled between its failure and its flag.
            std::thread::sleep(std::time::Duration::from_millis(1));
            Ok(i)
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 3 failed");
        assert!(started.load(Ordering::SeqCst) < 1000);
    }
}
