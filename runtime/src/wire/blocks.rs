//! Arrays that travel beside their message, not inside it. While a large
//! message is encoded for the wire ([`super::streamed`]), each contiguous array
//! of at least [`BLOCK_MIN`] bytes is left out of the encoding (the message
//! says only which block it is) and recorded here; the writer then sends
//! those blocks straight from the arrays' memory, and the reader reads each
//! straight into the memory of the array it becomes. So neither side ever
//! holds a second copy of a partition's data for the wire: no encoded message
//! of it, and no decode copy.
//!
//! Both ends are thread-local and scoped: [`capturing`] around an encode,
//! [`providing`] around a decode. Outside them arrays are encoded inline, as
//! in a checkpoint file.

use std::cell::RefCell;

/// Arrays smaller than this (64 KiB) stay inside their message: a block of its
/// own costs a frame.
pub const BLOCK_MIN: usize = 64 << 10;

/// One array's bytes, left out of a message being encoded. The message (which
/// owns the array) must outlive it: the writer keeps the message until every
/// block is written.
#[derive(Clone, Copy, Debug)]
pub struct BlockRef {
    ptr: *const u8,
    len: usize,
}

// SAFETY: a `BlockRef` points into an array that its message owns and that
// nothing mutates while the message is shared; the writer holding the
// message keeps the memory alive until it has written the block. It is only
// ever read.
unsafe impl Send for BlockRef {}
// SAFETY: as above: shared reads of memory nothing writes.
unsafe impl Sync for BlockRef {}

impl BlockRef {
    /// The block's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block is empty (never, by [`BLOCK_MIN`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block's bytes.
    ///
    /// # Safety
    /// The message whose array this block came from must still be alive.
    pub unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the caller keeps the array's message alive; the pointer and
        // length came from a slice of it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

thread_local! {
    static CAPTURED: RefCell<Option<Vec<BlockRef>>> = const { RefCell::new(None) };
    static PROVIDED: RefCell<Option<Vec<Option<Vec<f64>>>>> = const { RefCell::new(None) };
}

/// Runs `encode` with arrays of at least [`BLOCK_MIN`] bytes left out as
/// blocks; returns its result and the blocks, in the order the message refers
/// to them.
pub fn capturing<R>(encode: impl FnOnce() -> R) -> (R, Vec<BlockRef>) {
    let outer = CAPTURED.with(|c| c.borrow_mut().replace(Vec::new()));
    let result = encode();
    let blocks = CAPTURED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (result, blocks.unwrap_or_default())
}

/// Offers an array's values to the encode in progress: when blocks are being
/// captured and the array is large enough, records it and returns its block
/// number (the encoding then carries the number, not the values).
pub(super) fn offer(values: &[f64]) -> Option<u32> {
    let bytes: &[u8] = bytemuck::cast_slice(values);
    if bytes.len() < BLOCK_MIN || cfg!(target_endian = "big") {
        return None;
    }
    CAPTURED.with(|c| {
        let mut c = c.borrow_mut();
        let list = c.as_mut()?;
        list.push(BlockRef {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        });
        u32::try_from(list.len() - 1).ok()
    })
}

/// Runs `decode` with `blocks` to hand to the arrays that refer to them.
pub fn providing<R>(blocks: Vec<Vec<f64>>, decode: impl FnOnce() -> R) -> R {
    let given = blocks.into_iter().map(Some).collect();
    let outer = PROVIDED.with(|p| p.borrow_mut().replace(given));
    let result = decode();
    PROVIDED.with(|p| *p.borrow_mut() = outer);
    result
}

/// Takes block `index` for the array being decoded (each block once).
pub(super) fn take(index: u32) -> Result<Vec<f64>, String> {
    PROVIDED.with(|p| {
        let mut p = p.borrow_mut();
        let Some(blocks) = p.as_mut() else {
            return Err(format!(
                "block {index} referred to outside a message with blocks"
            ));
        };
        blocks
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("block {index} missing or referred to twice"))
    })
}
