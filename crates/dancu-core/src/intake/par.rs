//! Data parallelism on plain threads (scoped, no pool): a slice mapped in contiguous parts, one
//! per available core, the results in input order — the same output as a sequential map.

use std::num::NonZeroUsize;

/// Threads worth using: the cores available (at least one).
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// `items.iter().map(f).collect()`, computed on [`threads`] threads when the slice is big enough
/// to pay for them.
pub fn map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let n = threads();
    if n == 1 || items.len() < 4096 {
        return items.iter().map(f).collect();
    }
    let part = items.len().div_ceil(n);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> =
            items.chunks(part).map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<U>>())).collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

/// Like [`map`], each thread with its own mutable state (one per part, from `states`, which
/// must hold [`threads`] of them or more).
pub fn map_with<S: Send, T: Sync, U: Send>(
    states: &mut [S],
    items: &[T],
    f: impl Fn(&mut S, &T) -> U + Sync,
) -> Vec<U> {
    let n = states.len().min(threads()).max(1);
    if n == 1 || items.len() < 64 {
        let state = &mut states[0];
        return items.iter().map(|x| f(state, x)).collect();
    }
    let part = items.len().div_ceil(n);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(part)
            .zip(states.iter_mut())
            .map(|(chunk, state)| s.spawn(move || chunk.iter().map(|x| f(state, x)).collect::<Vec<U>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

/// `items.sort_unstable()` on [`threads`] threads: the slice split at its median
/// (`select_nth_unstable`), each part sorted on a thread of its own (split again while threads are left).
pub fn sort_unstable<T: Ord + Send>(items: &mut [T]) {
    sort_on(items, threads());
}

fn sort_on<T: Ord + Send>(items: &mut [T], threads: usize) {
    if threads <= 1 || items.len() < 1 << 16 {
        items.sort_unstable();
        return;
    }
    let mid = items.len() / 2;
    items.select_nth_unstable(mid);
    let (low, high) = items.split_at_mut(mid);
    std::thread::scope(|s| {
        s.spawn(|| sort_on(low, threads / 2));
        sort_on(high, threads - threads / 2);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_maps_keep_the_order_of_a_sequential_map() {
        let items: Vec<u64> = (0..100_003).collect();
        assert_eq!(map(&items, |x| x * 3 + 1), items.iter().map(|x| x * 3 + 1).collect::<Vec<_>>());
        let mut states = vec![0u64; threads() + 1];
        let out = map_with(&mut states, &items, |seen, x| {
            *seen += 1;
            x * 2
        });
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(states.iter().sum::<u64>(), items.len() as u64);
        assert!(map(&[] as &[u64], |x| *x).is_empty());
    }

    #[test]
    fn a_parallel_sort_sorts_as_a_sequential_one() {
        // Pseudo-random values with repeats, more than one thread's share.
        let items: Vec<u64> = (0..300_001u64).map(|x| x.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100_000).collect();
        let mut expected = items.clone();
        expected.sort_unstable();
        for threads in [1, 2, 3, 5] {
            let mut sorted = items.clone();
            sort_on(&mut sorted, threads);
            assert_eq!(sorted, expected, "{threads} threads");
        }
        let mut empty: Vec<u64> = Vec::new();
        sort_unstable(&mut empty);
        assert!(empty.is_empty());
    }
}
