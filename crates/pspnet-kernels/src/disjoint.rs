//! The one way parallel tasks share an output buffer: a raw view of it
//! that each task writes in its own pieces.

use std::marker::PhantomData;

/// A buffer borrowed for a parallel loop whose tasks write disjoint pieces
/// of it. Handing out a piece checks its bounds; that no two tasks write the
/// same values is each caller's `// SAFETY:` argument.
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    buffer: PhantomData<&'a mut [T]>,
}

// SAFETY: the view is built from a `&mut [T]` borrowed for `'a`, so the
// buffer outlives every task, and tasks write disjoint pieces (callers).
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    /// Shares `buffer` for the lifetime of its borrow.
    pub(crate) fn new(buffer: &'a mut [T]) -> Self {
        Disjoint { ptr: buffer.as_mut_ptr(), len: buffer.len(), buffer: PhantomData }
    }

    /// Where a piece of `rows` rows of `cols` values, `row_stride` apart,
    /// starting at `start`, begins; panics if any of it lies outside.
    pub(crate) fn piece(&self, start: usize, rows: usize, cols: usize, row_stride: usize) -> *mut T {
        assert!(rows > 0 && start + (rows - 1) * row_stride + cols <= self.len, "piece outside the buffer");
        self.ptr.wrapping_add(start)
    }

    /// The `len` values from `start`.
    ///
    /// # Safety
    /// No other live reference may overlap them.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn run_mut(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: `piece` checked the bounds; exclusive (caller); the buffer
        // outlives `self`.
        unsafe { std::slice::from_raw_parts_mut(self.piece(start, 1, len, 0), len) }
    }
}
