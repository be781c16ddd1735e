//! Lists of series kept for reuse. A batch's translation is a list of about 70 bytes a series
//! (800 KiB for a request of 2,000 histogram points), which the remote_write shards empty into
//! their requests. Allocated fresh for every batch, such a list is memory the allocator gave back
//! to the system since the last one, and every page of it is faulted in and zeroed again as the
//! translation first writes it: W2's largest source of page faults. The emptied lists come back
//! here instead, a few of them, and the next translations take them.

use super::Series;
use parking_lot::Mutex;

/// Lists kept at most: enough for the few batches a receiver takes at once after a wait.
const KEPT_LISTS: usize = 8;

/// Lists of room for fewer series than this are not kept: the allocator keeps its own small and
/// medium blocks (up to 128 KiB) anyway, and a small list kept would only be grown.
const MIN_KEPT_SERIES: usize = 2048;

/// A list with room for more series than this (made for an unusually large batch) is freed
/// rather than kept.
const MAX_KEPT_SERIES: usize = 1 << 16;

static KEPT: Kept = Kept::new(KEPT_LISTS);

/// An empty list with room for at least `n` series: a kept one if there is one.
pub fn take(n: usize) -> Vec<Series> {
    KEPT.take(n)
}

/// Empties `list` and keeps it for [`take`], unless enough are kept or its size is not one kept.
pub fn give_back(list: Vec<Series>) {
    KEPT.give_back(list)
}

/// Emptied lists, at most `most` of them.
struct Kept {
    lists: Mutex<Vec<Vec<Series>>>,
    most: usize,
}

impl Kept {
    const fn new(most: usize) -> Kept {
        Kept {
            lists: Mutex::new(Vec::new()),
            most,
        }
    }

    fn take(&self, n: usize) -> Vec<Series> {
        let kept = self.lists.lock().pop();
        match kept {
            Some(mut list) => {
                list.reserve(n);
                list
            }
            None => Vec::with_capacity(n),
        }
    }

    fn give_back(&self, mut list: Vec<Series>) {
        list.clear();
        if !(MIN_KEPT_SERIES..=MAX_KEPT_SERIES).contains(&list.capacity()) {
            return;
        }
        let mut lists = self.lists.lock();
        if lists.len() < self.most {
            lists.push(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::{LabelSet, Metadata};
    use std::sync::Arc;

    fn series() -> Series {
        let labels = LabelSet::new([("__name__", "up")]);
        Series::new(labels, Arc::new(Metadata::default()))
    }

    #[test]
    fn a_list_given_back_is_emptied_and_taken_again_with_its_room() {
        let kept = Kept::new(2);
        let mut list = kept.take(MIN_KEPT_SERIES);
        list.push(series());
        let (at, room) = (list.as_ptr(), list.capacity());
        kept.give_back(list);
        let again = kept.take(10);
        assert!(again.is_empty(), "its series were dropped");
        assert_eq!(
            (again.as_ptr(), again.capacity()),
            (at, room),
            "the same list"
        );
        let more = kept.take(MIN_KEPT_SERIES * 2);
        assert!(
            more.capacity() >= MIN_KEPT_SERIES * 2,
            "none kept: a new one"
        );
    }

    #[test]
    fn small_and_very_large_lists_are_not_kept_nor_more_than_the_most() {
        let kept = Kept::new(2);
        kept.give_back(Vec::with_capacity(MIN_KEPT_SERIES - 1));
        kept.give_back(Vec::with_capacity(MAX_KEPT_SERIES + 1));
        assert!(kept.lists.lock().is_empty());
        for _ in 0..3 {
            kept.give_back(Vec::with_capacity(MIN_KEPT_SERIES));
        }
        assert_eq!(kept.lists.lock().len(), 2);
    }

    #[test]
    fn a_kept_list_too_small_for_a_batch_is_grown() {
        let kept = Kept::new(2);
        kept.give_back(Vec::with_capacity(MIN_KEPT_SERIES));
        let list = kept.take(MIN_KEPT_SERIES * 4);
        assert!(list.capacity() >= MIN_KEPT_SERIES * 4);
        assert!(kept.lists.lock().is_empty());
    }
}
