//! Work on several items at once (layers to download or unpack), bounded.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `work` on every item with at most `jobs` at a time and returns the
/// results in item order. After a failure no new item starts; the error of
/// the first failed item (in item order) is returned.
pub fn map_bounded<T, R, E, F>(items: &[T], jobs: usize, work: F) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(&T) -> Result<R, E> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, E>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let result = work(&items[i]);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().expect("results lock")[i] = Some(result);
                }
            });
        }
    });
    let mut done = Vec::with_capacity(items.len());
    let mut first_error = None;
    for result in results.into_inner().expect("results lock") {
        match result {
            Some(Ok(value)) => done.push(value),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            // Not started because an item failed; that error is returned.
            None => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_item_order_and_the_first_error_wins() {
        let items: Vec<u32> = (0..20).collect();
        let doubled: Result<Vec<u32>, ()> = map_bounded(&items, 4, |i| Ok(i * 2));
        assert_eq!(
            doubled.unwrap(),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );
        let failing: Result<Vec<u32>, u32> =
            map_bounded(&items, 1, |&i| if i >= 3 { Err(i) } else { Ok(i) });
        assert_eq!(failing, Err(3));
    }
}
