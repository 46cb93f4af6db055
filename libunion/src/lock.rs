//! The one lock libunion's process-wide caches share: a spin lock, since a
//! preload library cannot rely on the program's threading library. Most
//! holders only touch memory; the refreshes of the upper-layer cache and of
//! the owners log also read a file under it.
//!
//! Known limit: a process that forks while another of its threads holds one
//! of these locks leaves the child with it taken (its first lookup spins
//! for ever), and a signal handler that looks up a path while its own
//! thread holds one deadlocks. Taking every lock around `fork`, and
//! knowing the holding thread, would close both.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `with`, under the lock. (The
// caches hold raw pointers to their own malloc'd memory, hence no `Send`
// bound.)
unsafe impl<T> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with the value, the lock held. `f` must not take this
    /// lock again.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: the lock is held.
        let result = f(unsafe { &mut *self.value.get() });
        self.locked.store(false, Ordering::Release);
        result
    }
}
