//! Lists kept for reuse. A batch's translation is a list of about 70 bytes a series (800 KiB for
//! a request of 2,000 histogram points) and a list of the series' fingerprints, which the
//! remote_write shards empty into their requests. Allocated fresh for every batch, such a list is
//! memory the allocator gave back to the system since the last one, and every page of it is
//! faulted in and zeroed again as the translation first writes it: W2's largest source of page
//! faults. The emptied lists come back here instead, a few of each kind, and the next
//! translations take them.

use super::Series;
use parking_lot::Mutex;

/// The translations' lists of series, of 256 KiB (3,600 series) to 8 MiB.
pub static SERIES: Kept<Series> = Kept::new(KEPT_LISTS, 256 << 10, 8 << 20);

/// The translations' lists of fingerprints ([`super::Translation::fingerprints`]), of 64 KiB
/// (8,000 series) to 1 MiB.
pub static FINGERPRINTS: Kept<u64> = Kept::new(KEPT_LISTS, 64 << 10, 1 << 20);

/// Lists of each kind kept at most: enough for the few batches a receiver takes at once after a
/// wait for room (change 74), few enough that what is kept adds little to the peak memory of a
/// pipeline of small batches.
const KEPT_LISTS: usize = 6;

/// Emptied lists of `T`: at most `most_lists` of them, each of at least `least_bytes` of room,
/// and of at most `most_bytes` together (a list of more, made for an unusually large batch, is
/// freed). What is kept can only serve as such lists, not as other memory, so it may add up to
/// `most_bytes` to the process' peak. Small lists are not kept: W1's (2,000 series a request,
/// 144 KiB) kept raised its peak memory by 2-4 MiB for no fewer page faults (see
/// docs/performance.md, change 75).
pub struct Kept<T> {
    lists: Mutex<Vec<Vec<T>>>,
    most_lists: usize,
    least_bytes: usize,
    most_bytes: usize,
}

impl<T> Kept<T> {
    const fn new(most_lists: usize, least_bytes: usize, most_bytes: usize) -> Kept<T> {
        Kept {
            lists: Mutex::new(Vec::new()),
            most_lists,
            least_bytes,
            most_bytes,
        }
    }

    /// The room of a list, in bytes.
    fn bytes(list: &Vec<T>) -> usize {
        list.capacity() * size_of::<T>()
    }

    /// The room of the kept lists together, in bytes.
    fn kept_bytes(lists: &[Vec<T>]) -> usize {
        lists.iter().map(Self::bytes).sum()
    }

    /// An empty list with room for at least `n` items: the kept one of least room enough if
    /// there is one, else a kept one grown, else a new one.
    pub fn take(&self, n: usize) -> Vec<T> {
        let taken = {
            let mut lists = self.lists.lock();
            let fitting = (0..lists.len())
                .filter(|&i| lists[i].capacity() >= n)
                .min_by_key(|&i| lists[i].capacity());
            match fitting {
                Some(i) => Some(lists.swap_remove(i)),
                None => lists.pop(),
            }
        };
        match taken {
            Some(mut list) => {
                list.reserve(n);
                list
            }
            None => Vec::with_capacity(n),
        }
    }

    /// Empties `list` and keeps it for [`Kept::take`], unless its room is too small or too
    /// large to keep, or the kept lists have room enough already.
    pub fn give_back(&self, mut list: Vec<T>) {
        list.clear();
        let bytes = Self::bytes(&list);
        if bytes < self.least_bytes {
            return;
        }
        let mut lists = self.lists.lock();
        if lists.len() < self.most_lists && Self::kept_bytes(&lists) + bytes <= self.most_bytes {
            lists.push(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::{LabelSet, Metadata};
    use std::sync::Arc;

    /// `kept()` keeps three lists of at least `MIN` u64s, of `8 * MIN` together.
    const MIN: usize = 1024;
    const MIN_BYTES: usize = MIN * 8;

    fn kept<T>() -> Kept<T> {
        Kept::new(3, MIN_BYTES, 8 * MIN_BYTES)
    }

    fn kept_lists(kept: &Kept<u64>) -> Vec<usize> {
        kept.lists.lock().iter().map(Vec::capacity).collect()
    }

    #[test]
    fn a_list_given_back_is_emptied_and_taken_again_with_its_room() {
        let kept = kept();
        let mut list = kept.take(MIN_BYTES / size_of::<Series>() + 1);
        list.push(Series::new(
            LabelSet::new([("__name__", "up")]),
            Arc::new(Metadata::default()),
        ));
        let (at, room) = (list.as_ptr(), list.capacity());
        kept.give_back(list);
        let again = kept.take(10);
        assert!(again.is_empty(), "its series were dropped");
        assert_eq!(
            (again.as_ptr(), again.capacity()),
            (at, room),
            "the same list"
        );
        let more = kept.take(room * 2);
        assert!(more.capacity() >= room * 2, "none kept: a new one");
    }

    #[test]
    fn small_and_large_lists_are_not_kept_nor_more_than_the_most() {
        let kept = kept::<u64>();
        kept.give_back(Vec::with_capacity(MIN - 1));
        kept.give_back(Vec::with_capacity(8 * MIN + 1));
        assert!(kept_lists(&kept).is_empty());
        kept.give_back(Vec::with_capacity(4 * MIN));
        kept.give_back(Vec::with_capacity(4 * MIN + 1));
        kept.give_back(Vec::with_capacity(2 * MIN));
        assert_eq!(
            kept_lists(&kept),
            [4 * MIN, 2 * MIN],
            "no room for 4 * MIN + 1"
        );
        kept.give_back(Vec::with_capacity(MIN));
        kept.give_back(Vec::with_capacity(MIN));
        assert_eq!(
            kept_lists(&kept),
            [4 * MIN, 2 * MIN, MIN],
            "three lists at most"
        );
        let _ = kept.take(1);
        kept.give_back(Vec::with_capacity(MIN));
        assert_eq!(
            kept_lists(&kept),
            [4 * MIN, 2 * MIN, MIN],
            "one taken makes room"
        );
    }

    #[test]
    fn the_kept_list_of_least_room_enough_is_taken() {
        let kept = kept::<u64>();
        for n in [4 * MIN, MIN, 2 * MIN] {
            kept.give_back(Vec::with_capacity(n));
        }
        assert_eq!(kept.take(MIN + 1).capacity(), 2 * MIN);
        assert_eq!(kept.take(1).capacity(), MIN);
        assert_eq!(kept.take(1).capacity(), 4 * MIN);
        assert!(kept_lists(&kept).is_empty());
        assert_eq!(Kept::kept_bytes(&kept.lists.lock()), 0);
    }

    #[test]
    fn a_kept_list_too_small_for_a_batch_is_grown() {
        let kept = kept::<u64>();
        kept.give_back(Vec::with_capacity(MIN));
        let list = kept.take(MIN * 4);
        assert!(list.capacity() >= MIN * 4);
        assert!(kept_lists(&kept).is_empty());
    }
}
