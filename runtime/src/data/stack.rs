//! Stacking one column of a [`Bag`] into one array ([`Bag::stack`]): the N x D
//! result of a pipeline, filled on several threads when it is large.

use crate::bag::{failed, Bag, FailedSample};
use crate::batch::Batch;
use crate::data::error::DataError;
use ndarray::{ArrayD, Axis, IxDyn};
use std::sync::Arc;

impl Bag {
    /// Stacks one array column of every sample that went through, in order, into
    /// one array whose first axis is the sample (e.g. the N x D result of a
    /// pipeline), and says which samples it left out and why.
    pub fn stack(&self, column: &str) -> Result<Stacked, DataError> {
        self.clone().into_stack(column)
    }

    /// Like [`Bag::stack`], consuming the bag: each partition is freed as soon as it
    /// has been copied, so the peak memory is the result plus one partition.
    pub fn into_stack(self, column: &str) -> Result<Stacked, DataError> {
        let mut parts = self.partitions;
        for p in &mut parts {
            if p.is_lazy(column) {
                Arc::make_mut(p).load_columns(&[column], "stack");
            }
        }
        let mut row_shape: Option<Vec<usize>> = None;
        let mut rows = 0;
        // A partition whose every sample failed contributes no row (and may have
        // no such column at all).
        let contributes = |p: &Batch| p.len() > p.failures().len();
        for p in parts.iter().filter(|p| contributes(p)) {
            let a = p.array(column).ok_or_else(|| DataError::UnknownAttribute {
                step: "stack".into(),
                attribute: column.into(),
                known: p.column_names().join(", "),
            })?;
            let shape = a.shape()[1..].to_vec();
            match &row_shape {
                None => row_shape = Some(shape),
                Some(s) if *s != shape => {
                    return Err(DataError::ShapeMismatch {
                        key: p.keys()[0].to_string(),
                        what: column.into(),
                        expected: s.clone(),
                        found: shape,
                    })
                }
                _ => {}
            }
            rows += p.len() - p.failures().len();
        }
        let row_shape = row_shape.unwrap_or_default();
        let width: usize = row_shape.iter().product();
        // Zeroed memory this large comes from the system unwritten (each
        // copy maps its own part).
        let mut buf = vec![0f64; rows * width];
        let mut left_out = Vec::new();
        // Each contributing partition with the part of the result it fills.
        let mut copies = Vec::with_capacity(parts.len());
        let mut rest = &mut buf[..];
        for p in parts {
            for (row, f) in p.failures() {
                left_out.push(failed(p.keys()[*row].to_string(), f.clone()));
            }
            if !contributes(&p) {
                continue;
            }
            let n = (p.len() - p.failures().len()) * width;
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            copies.push((dst, p));
        }
        let threads = match rows * width * std::mem::size_of::<f64>() >= PARALLEL_STACK_FROM {
            true => std::thread::available_parallelism().map_or(1, |n| n.get()),
            false => 1,
        };
        copy_in_parallel(copies, column, threads.min(MAX_STACK_THREADS));
        let mut shape = vec![rows];
        shape.extend(row_shape);
        let array = ArrayD::from_shape_vec(IxDyn(&shape), buf).expect("stacked rows match shape");
        Ok(Stacked { array, left_out })
    }
}

/// One column of a bag stacked into one array ([`Bag::stack`]), and the samples
/// that are not in it. It reads as the array (`Deref`).
#[derive(Clone, Debug, PartialEq)]
pub struct Stacked {
    /// One row per sample that went through, in order; the first axis is the sample.
    pub array: ArrayD<f64>,
    /// Every sample left out, in order, with the step and the reason: those a step
    /// failed on, and those whose value failed to load when stacked.
    pub left_out: Vec<FailedSample>,
}

impl Stacked {
    /// The array alone.
    pub fn into_array(self) -> ArrayD<f64> {
        self.array
    }
}

impl std::ops::Deref for Stacked {
    type Target = ArrayD<f64>;

    fn deref(&self) -> &ArrayD<f64> {
        &self.array
    }
}

impl PartialEq<ArrayD<f64>> for Stacked {
    fn eq(&self, other: &ArrayD<f64>) -> bool {
        self.array == *other
    }
}

/// A stacked result of at least this many bytes is filled on several threads:
/// most of the cost is the kernel's first touch of each fresh page, which
/// spreads over cores.
const PARALLEL_STACK_FROM: usize = 32 << 20;

/// At most this many threads fill one stacked result.
const MAX_STACK_THREADS: usize = 8;

/// Copies each partition's rows of `column` (the failed ones left out) into the
/// part of the result paired with it, on up to `threads` threads; each
/// partition is freed as soon as it has been copied.
fn copy_in_parallel(copies: Vec<(&mut [f64], Arc<Batch>)>, column: &str, threads: usize) {
    if threads <= 1 || copies.len() <= 1 {
        copies
            .into_iter()
            .for_each(|(dst, p)| copy_rows(dst, p, column));
        return;
    }
    let mut shares: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, copy) in copies.into_iter().enumerate() {
        shares[i % threads].push(copy);
    }
    std::thread::scope(|s| {
        for share in shares {
            s.spawn(move || {
                share
                    .into_iter()
                    .for_each(|(dst, p)| copy_rows(dst, p, column))
            });
        }
    });
}

/// Copies `p`'s rows of `column` that did not fail into `dst`, then frees `p`.
fn copy_rows(dst: &mut [f64], p: Arc<Batch>, column: &str) {
    // The result is fresh memory: its part is mapped by the thread that fills it.
    crate::data::fresh::populate(dst);
    let a = p.array(column).expect("checked before the copy");
    match (p.failures().is_empty(), a.as_slice()) {
        (true, Some(s)) => dst.copy_from_slice(s),
        (true, None) => dst.iter_mut().zip(a.iter()).for_each(|(d, v)| *d = *v),
        (false, _) => {
            let kept = a
                .axis_iter(Axis(0))
                .enumerate()
                .filter(|(i, _)| !p.failures().contains_key(i))
                .flat_map(|(_, row)| row.into_iter());
            dst.iter_mut().zip(kept).for_each(|(d, v)| *d = *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::Partitioning;
    use crate::batch::DATA;
    use ndarray::{Array2, ShapeBuilder};

    #[test]
    fn a_large_stack_is_filled_on_several_threads_in_order_leaving_failed_rows_out() {
        let (n, d) = (70_000, 64);
        assert!(
            n * d * 8 >= PARALLEL_STACK_FROM,
            "big enough to be filled in parallel"
        );
        let data = Array2::from_shape_fn((n, d), |(i, j)| (i * d + j) as f64);
        let keys = (0..n).map(|i| i.to_string()).collect();
        let bag =
            Bag::from_rows(keys, data.clone().into_dyn(), Partitioning::NPartitions(5)).unwrap();
        let mut parts: Vec<Batch> = bag.partitions().iter().map(|p| (**p).clone()).collect();
        let starts: Vec<usize> = parts
            .iter()
            .scan(0, |at, p| {
                let start = *at;
                *at += p.len();
                Some(start)
            })
            .collect();
        parts[1] = parts[1].with_rows_failed(&[0, 7], "s", "bad row");
        parts[3] = parts[3].with_all_failed("s", "bad partition");
        // A column in column-major order: not one slice in row order.
        let own = parts[4].array(DATA).unwrap().clone();
        let mut columns = Array2::zeros((own.shape()[0], d).f());
        columns.assign(&own.into_dimensionality::<ndarray::Ix2>().unwrap());
        parts[4].set_output(DATA, columns.into_dyn(), vec![]);
        let failed_rows: Vec<usize> = [starts[1], starts[1] + 7]
            .into_iter()
            .chain(starts[3]..starts[3] + parts[3].len())
            .collect();

        let stacked = Bag::from_batches(parts).unwrap().into_stack(DATA).unwrap();

        let kept: Vec<usize> = (0..n).filter(|i| !failed_rows.contains(i)).collect();
        assert_eq!(stacked.array, data.select(Axis(0), &kept).into_dyn());
        let left: Vec<String> = stacked.left_out.iter().map(|f| f.key.clone()).collect();
        let want: Vec<String> = failed_rows.iter().map(|i| i.to_string()).collect();
        assert_eq!(left, want, "every failed sample is named, in order");
    }
}
