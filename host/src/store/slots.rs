//! A fixed set of things lent out one at a time: [`Slots`]. The stores bound their reads of
//! decision records with it (the embedded store lends its read-only connections; PostgreSQL's
//! lends only the right to take a pooled connection), so that a tenant's long stats queries can
//! take no more than their share of the database.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Things lent out one at a time. A caller takes whichever is free, or waits until one comes
/// back, whichever it is: never behind one particular borrower.
pub(crate) struct Slots<T> {
    free: Mutex<Vec<T>>,
    back: Condvar,
}

impl<T> Slots<T> {
    pub(crate) fn new(items: Vec<T>) -> Self {
        Self {
            free: Mutex::new(items),
            back: Condvar::new(),
        }
    }

    /// A free one, after waiting for the first to come back if none is.
    pub(crate) fn take(&self) -> Slot<'_, T> {
        let mut free = self.lock();
        loop {
            if let Some(item) = free.pop() {
                return Slot {
                    slots: self,
                    item: Some(item),
                };
            }
            free = self.back.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Calls `f` on each thing not lent out at the moment.
    #[cfg(test)]
    pub(crate) fn each_free(&self, f: impl FnMut(&T)) {
        self.lock().iter().for_each(f);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // The list is whole between statements: a panic elsewhere leaves it usable.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One thing lent out of [`Slots`], given back when dropped (in a panic too).
pub(crate) struct Slot<'a, T> {
    slots: &'a Slots<T>,
    item: Option<T>,
}

impl<T> Deref for Slot<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.item.as_ref().expect("lent until dropped")
    }
}

impl<T> DerefMut for Slot<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("lent until dropped")
    }
}

impl<T> Drop for Slot<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.slots.lock().push(item);
            self.slots.back.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    /// With one slot held for as long as the test likes, every other caller goes on with the
    /// others, one after another, and a caller that finds none free takes the first given back.
    #[test]
    fn a_caller_takes_any_free_slot_and_waits_for_the_first_back() {
        let slots = Arc::new(Slots::new(vec![1, 2]));
        let held = slots.take();
        for _ in 0..5 {
            let other = slots.take();
            assert_ne!(*other, *held);
        }
        let second = slots.take();
        let (took, taken) = mpsc::channel();
        // Not scoped: if no slot ever came back, the test fails rather than waits for ever.
        let waiter = slots.clone();
        let waiting = std::thread::spawn(move || took.send(*waiter.take()).unwrap());
        assert!(
            taken.recv_timeout(Duration::from_millis(50)).is_err(),
            "a third slot was lent"
        );
        let back = *second;
        drop(second);
        assert_eq!(taken.recv_timeout(Duration::from_secs(20)), Ok(back));
        // It has its slot: what is left is to give it back.
        waiting.join().unwrap();
        drop(held);
        assert_eq!(slots.lock().len(), 2);
    }
}
