//! Sorting and grouping the pass's records on both cores: placed by a hash's top byte and sorted
//! in runs, light groups dropped before anything is sorted, runs of equal keys found.

use xxhash_rust::xxh3::xxh3_64;

/// Sorts the items of `parts` so that equal `key`s are together, in order of the top byte of
/// their `hash` and then of `key` (with `hash` the identity on a uniform hash, simply sorted).
/// One pass places the items by the hash's top byte (each part on its own core, straight from
/// where the partition's pass left it), then each of the 256 runs is sorted while it is in the
/// cache, half of them on each core. Returns the items and where each top byte's run starts
/// (`bounds[b]..bounds[b + 1]`).
pub(crate) fn sort_hashed<T, K>(
    parts: Vec<Vec<T>>,
    hash: impl Fn(&T) -> u64 + Sync,
    key: impl Fn(&T) -> K + Sync,
) -> (Vec<T>, [usize; 257])
where
    T: Copy + Default + Send + Sync,
    K: Ord,
{
    let top = |item: &T| (hash(item) >> 56) as usize;
    let top = &top;
    let counts: Vec<[usize; 256]> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                s.spawn(move || {
                    let mut c = [0usize; 256];
                    for item in part {
                        c[top(item)] += 1;
                    }
                    c
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sort worker panicked"))
            .collect()
    });
    let mut bounds = [0usize; 257];
    for b in 0..256 {
        bounds[b + 1] = bounds[b] + counts.iter().map(|c| c[b]).sum::<usize>();
    }
    let mut sorted = vec![T::default(); bounds[256]];
    // Each part gets its own slice of each run, so the parts are placed side by side.
    let mut slices: Vec<Vec<&mut [T]>> = parts.iter().map(|_| Vec::with_capacity(256)).collect();
    let mut rest: &mut [T] = &mut sorted;
    for b in 0..256 {
        for (p, c) in counts.iter().enumerate() {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(c[b]);
            slices[p].push(head);
            rest = tail;
        }
    }
    std::thread::scope(|s| {
        for (part, mut runs) in parts.iter().zip(slices) {
            s.spawn(move || {
                let mut cursor = [0usize; 256];
                for item in part {
                    let b = top(item);
                    runs[b][cursor[b]] = *item;
                    cursor[b] += 1;
                }
            });
        }
    });
    drop(parts);
    let (low, high) = sorted.split_at_mut(bounds[128]);
    let sort_runs = |part: &mut [T], bounds: &[usize]| {
        let base = bounds[0];
        for w in bounds.windows(2) {
            part[w[0] - base..w[1] - base].sort_unstable_by_key(&key);
        }
    };
    join(
        || sort_runs(low, &bounds[..=128]),
        || sort_runs(high, &bounds[128..]),
    );
    (sorted, bounds)
}

/// Runs `f(0)` and `f(1)` on two threads.
pub(crate) fn both<T: Send>(f: impl Fn(usize) -> T + Sync) -> [T; 2] {
    let (a, b) = join(|| f(0), || f(1));
    [a, b]
}

/// The hash of a group of records (up to three numbers).
pub(crate) fn group(a: u64, b: u64, c: u64) -> u64 {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..16].copy_from_slice(&b.to_le_bytes());
    bytes[16..].copy_from_slice(&c.to_le_bytes());
    xxh3_64(&bytes)
}

/// The items whose group (`key`, a hash) may weigh at least `min` in all: most groups of a busy
/// network are far below a detection's threshold, and sorting only the others is much cheaper
/// than sorting everything.
///
/// The weights are summed per slot of a table indexed by the group's hash (16 MB at most, so
/// it stays in the cache). A slot holds at least the weight of each group in it, so no group at
/// or over `min` is dropped; a light group that shares a slot with others may pass, and the
/// exact grouping that follows drops it. Built on both cores: each counts half of the slots,
/// then each keeps from half of the items.
pub(crate) fn crowded<T: Copy + Send + Sync>(
    parts: &[Vec<T>],
    min: u64,
    key: impl Fn(&T) -> u64 + Sync,
    weight: impl Fn(&T) -> u64 + Sync,
) -> Vec<T> {
    if min <= 1 {
        return parts.concat();
    }
    let items = parts.iter().map(Vec::len).sum::<usize>();
    let half_slots = (items.next_power_of_two() / 2).clamp(1 << 9, 1 << 21);
    let mask = half_slots as u64 - 1;
    let tables = both(|half| {
        let mut table = vec![0u32; half_slots];
        for item in parts.iter().flatten() {
            let h = key(item);
            if (h >> 63) as usize == half {
                let slot = &mut table[(h & mask) as usize];
                *slot = slot.saturating_add(u32::try_from(weight(item)).unwrap_or(u32::MAX));
            }
        }
        table
    });
    // A full slot may hold more than it shows: it always passes.
    let min = u32::try_from(min).unwrap_or(u32::MAX);
    let keep = |part: &[T]| -> Vec<T> {
        part.iter()
            .filter(|item| {
                let h = key(item);
                tables[(h >> 63) as usize][(h & mask) as usize] >= min
            })
            .copied()
            .collect()
    };
    let mut kept = Vec::new();
    for pair in parts.chunks(2) {
        let (a, b) = join(|| keep(&pair[0]), || pair.get(1).map(|p| keep(p)));
        kept.extend(a);
        kept.extend(b.unwrap_or_default());
    }
    kept
}

/// The runs of equal `key` in `items` (sorted by it), as index ranges.
pub(crate) fn runs<T, K: PartialEq>(
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let k = key(&items[i]);
        let mut j = i + 1;
        while j < items.len() && key(&items[j]) == k {
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// Runs `a` and `b` on two threads.
pub(crate) fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|s| {
        let other = s.spawn(b);
        let first = a();
        (first, other.join().expect("scan worker panicked"))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn crowded_keeps_every_group_at_or_over_the_threshold() {
        // 3 000 groups of 1 to 12 items; the ones with at least 10 must all pass.
        let items: Vec<(u64, u64)> = (0..3_000u64)
            .flat_map(|g| (0..(g % 12 + 1)).map(move |i| (g, i)))
            .collect();
        let (a, b) = items.split_at(items.len() / 3);
        let parts = [a.to_vec(), b.to_vec()];
        let kept = crowded(&parts, 10, |(g, _)| group(*g, 0, 0), |_| 1);
        let mut kept_groups: BTreeMap<u64, usize> = BTreeMap::new();
        for (g, _) in &kept {
            *kept_groups.entry(*g).or_default() += 1;
        }
        for g in 0..3_000u64 {
            let size = (g % 12 + 1) as usize;
            if size >= 10 {
                assert_eq!(kept_groups.get(&g), Some(&size), "group {g}");
            }
        }
        // Most light groups are dropped (a few may share a slot with heavy ones).
        let light = kept_groups.keys().filter(|g| *g % 12 + 1 < 10).count();
        assert!(light < 2_250 / 4, "{light} of 2250 light groups kept");
        // By weight: one heavy item is enough.
        let kept = crowded(
            &parts,
            5_000,
            |(g, _)| group(*g, 0, 0),
            |(g, i)| {
                if *g == 7 && *i == 0 { 6_000 } else { 1 }
            },
        );
        assert_eq!(kept.iter().filter(|(g, _)| *g == 7).count(), 8);
        assert!(kept.len() < 8 + 50, "{} kept", kept.len());
        assert_eq!(crowded(&parts, 1, |(g, _)| *g, |_| 1).len(), items.len());
    }

    #[test]
    fn sorting_by_hash_keeps_groups_together() {
        let items = [1, 1, 2, 3, 3, 3];
        assert_eq!(runs(&items, |x| *x), vec![0..2, 2..3, 3..6]);
        assert!(runs(&[] as &[u8], |x| *x).is_empty());

        // Parts sorted together: equal keys side by side, runs by the hash's top byte.
        let parts: Vec<Vec<(u64, u32)>> = vec![
            (0..1_000u64).map(|i| (i % 97, i as u32)).collect(),
            (0..700u64).map(|i| (i % 89, i as u32)).collect(),
            Vec::new(),
        ];
        let hash = |x: &(u64, u32)| group(x.0, 0, 0);
        let (sorted, bounds) = sort_hashed(parts, hash, |x| *x);
        assert_eq!(sorted.len(), 1_700);
        assert_eq!(bounds[256], 1_700);
        for b in 0..256 {
            let run = &sorted[bounds[b]..bounds[b + 1]];
            assert!(run.iter().all(|x| (hash(x) >> 56) as usize == b));
            assert!(run.windows(2).all(|w| w[0] <= w[1]));
        }
        let groups = runs(&sorted, |x| x.0);
        assert_eq!(groups.len(), 97);
    }
}
