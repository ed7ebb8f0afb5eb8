//! Data-parallel helpers on scoped std threads (no thread-pool dependency).

/// Number of worker threads to use for voxel loops.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 64)
}

/// Split `out` into rows of `row_len` and call `f(row_index, row)` for every
/// row, spreading contiguous blocks of rows over the available cores.
pub fn for_each_row<T: Send>(out: &mut [T], row_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if row_len == 0 || out.is_empty() {
        return;
    }
    let rows = out.len() / row_len;
    let workers = threads().min(rows.max(1));
    if workers <= 1 || out.len() < 1 << 14 {
        for (r, row) in out.chunks_mut(row_len).enumerate() {
            f(r, row);
        }
        return;
    }
    let rows_per = rows.div_ceil(workers);
    std::thread::scope(|s| {
        for (b, block) in out.chunks_mut(rows_per * row_len).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (r, row) in block.chunks_mut(row_len).enumerate() {
                    f(b * rows_per + r, row);
                }
            });
        }
    });
}

/// Split `0..n` into one contiguous range per worker and collect
/// `f(range)` in order.
pub fn map_ranges<T: Send>(n: usize, f: impl Fn(std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    let workers = threads().min(n.max(1));
    if workers <= 1 {
        return vec![f(0..n)];
    }
    let per = n.div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|lo| {
                let f = &f;
                s.spawn(move || f(lo..(lo + per).min(n)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
