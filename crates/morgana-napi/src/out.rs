//! Writing results into buffers the caller owns (shared by the IPv4 and IPv6 bindings).

use crate::errors::failure;
use std::cell::RefCell;

/// Runs `emit` on `out[offset..]`; returns the length it wrote or a negative error
/// (`ERR_BUFFER_TOO_SMALL` when `offset` is past the end).
pub(crate) fn emit_at(
    out: &mut [u8],
    offset: u32,
    emit: impl FnOnce(&mut [u8]) -> Result<usize, &'static str>,
) -> i32 {
    let Some(out) = out.get_mut(offset as usize..) else {
        return failure("ERR_BUFFER_TOO_SMALL");
    };
    match emit(out) {
        Ok(len) => len as i32,
        Err(code) => failure(code),
    }
}

thread_local! {
    /// Reused between calls so fragmenting allocates nothing once warm.
    static SCRATCH: RefCell<(Vec<u8>, Vec<usize>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `fragment` into scratch buffers (packets back to back, and their lengths), then copies
/// the packets into `out` and their lengths into `lengths`. Returns the number of packets or a
/// negative error (`ERR_BUFFER_TOO_SMALL` when `out` or `lengths` cannot hold the result).
pub(crate) fn fragments_into(
    out: &mut [u8],
    lengths: &mut [u32],
    fragment: impl FnOnce(&mut Vec<u8>, &mut Vec<usize>) -> Result<(), &'static str>,
) -> i32 {
    SCRATCH.with_borrow_mut(|(bytes, lens)| {
        bytes.clear();
        lens.clear();
        if let Err(code) = fragment(bytes, lens) {
            return failure(code);
        }
        if bytes.len() > out.len() || lens.len() > lengths.len() {
            return failure("ERR_BUFFER_TOO_SMALL");
        }
        out[..bytes.len()].copy_from_slice(bytes);
        for (slot, len) in lengths.iter_mut().zip(lens.iter()) {
            *slot = *len as u32;
        }
        lens.len() as i32
    })
}
