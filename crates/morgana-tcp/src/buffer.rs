//! Bounded byte buffers of a connection: the send buffer (written by the application, released
//! by ACKs, read again for retransmission) and the receive buffer (in-order bytes waiting for the
//! application plus a bounded list of out-of-order segments).

use crate::seq;
use std::collections::VecDeque;

/// Copies `out.len()` bytes starting at `offset` out of a ring buffer.
fn copy_out(ring: &VecDeque<u8>, offset: usize, out: &mut [u8]) {
    let (a, b) = ring.as_slices();
    let mut at = offset;
    let mut written = 0;
    if at < a.len() {
        let n = (a.len() - at).min(out.len());
        out[..n].copy_from_slice(&a[at..at + n]);
        written = n;
        at = a.len();
    }
    if written < out.len() {
        let start = at - a.len();
        let n = out.len() - written;
        out[written..].copy_from_slice(&b[start..start + n]);
    }
}

/// The send buffer: bytes from SND.UNA onwards, unacknowledged or not yet sent.
#[derive(Debug)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    capacity: usize,
}

impl SendBuffer {
    /// An empty buffer holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        SendBuffer { data: VecDeque::new(), capacity }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Room left.
    pub fn free(&self) -> usize {
        self.capacity - self.data.len()
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends as much of `bytes` as fits; returns how much.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        self.data.extend(&bytes[..n]);
        n
    }

    /// Releases `n` acknowledged bytes from the front.
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        if self.data.is_empty() && self.data.capacity() > 64 * 1024 {
            // Idle connections should not pin a large allocation.
            self.data.shrink_to(0);
        }
    }

    /// Copies `out.len()` bytes starting `offset` bytes after SND.UNA.
    pub fn copy(&self, offset: usize, out: &mut [u8]) {
        copy_out(&self.data, offset, out);
    }

    /// The `len` bytes starting `offset` bytes after SND.UNA, as at most two slices.
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let (a, b) = self.data.as_slices();
        if offset >= a.len() {
            let start = offset - a.len();
            (&b[start..start + len], &[])
        } else if offset + len <= a.len() {
            (&a[offset..offset + len], &[])
        } else {
            (&a[offset..], &b[..offset + len - a.len()])
        }
    }
}

/// The receive buffer with bounded out-of-order reassembly.
#[derive(Debug)]
pub struct RecvBuffer {
    ready: VecDeque<u8>,
    capacity: usize,
    /// Out-of-order segments (sequence number, bytes), sorted by sequence number.
    ooo: Vec<(u32, Vec<u8>)>,
    max_ooo: usize,
    /// Out-of-order segments dropped because the list was full.
    pub ooo_dropped: u64,
}

impl RecvBuffer {
    /// An empty buffer: `capacity` bytes of window, at most `max_ooo` out-of-order segments.
    pub fn new(capacity: usize, max_ooo: usize) -> Self {
        RecvBuffer { ready: VecDeque::new(), capacity, ooo: Vec::new(), max_ooo, ooo_dropped: 0 }
    }

    /// In-order bytes waiting for the application.
    pub fn readable(&self) -> usize {
        self.ready.len()
    }

    /// The receive window: room beyond the bytes waiting.
    pub fn window(&self) -> usize {
        self.capacity - self.ready.len()
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether out-of-order segments are held.
    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Up to `max` SACK blocks describing the out-of-order data (RFC 2018), first the most
    /// recently changed is not tracked: they are listed in sequence order.
    pub fn out_of_order_blocks(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.ooo.iter().map(|(s, d)| (*s, s.wrapping_add(d.len() as u32)))
    }

    /// Takes `data` at `seq`, already trimmed by the caller to start at or after `rcv_nxt` and to
    /// end inside the window. Returns how many bytes became readable (RCV.NXT advances by it).
    pub fn insert(&mut self, seq_no: u32, data: &[u8], rcv_nxt: u32) -> usize {
        if data.is_empty() {
            return 0;
        }
        if seq_no != rcv_nxt {
            self.insert_out_of_order(seq_no, data);
            return 0;
        }
        let room = self.window();
        let data = &data[..data.len().min(room)];
        self.ready.extend(data);
        let mut advanced = data.len();
        let mut next = rcv_nxt.wrapping_add(advanced as u32);
        // Pull in every held segment the new bytes reached.
        while let Some((s, bytes)) = self.ooo.first() {
            if seq::gt(*s, next) {
                break;
            }
            let end = s.wrapping_add(bytes.len() as u32);
            if seq::gt(end, next) {
                let skip = seq::diff(next, *s) as usize;
                let take = (bytes.len() - skip).min(self.window());
                let (_, bytes) = &self.ooo[0];
                let part = &bytes[skip..skip + take];
                self.ready.extend(part);
                advanced += take;
                next = next.wrapping_add(take as u32);
            }
            self.ooo.remove(0);
        }
        advanced
    }

    fn insert_out_of_order(&mut self, seq_no: u32, data: &[u8]) {
        let end = seq_no.wrapping_add(data.len() as u32);
        // Already covered by a held segment?
        if self.ooo.iter().any(|(s, d)| seq::le(*s, seq_no) && seq::ge(s.wrapping_add(d.len() as u32), end)) {
            return;
        }
        // Drop held segments this one covers entirely.
        self.ooo.retain(|(s, d)| !(seq::ge(*s, seq_no) && seq::le(s.wrapping_add(d.len() as u32), end)));
        if self.ooo.len() >= self.max_ooo {
            self.ooo_dropped += 1;
            return;
        }
        let at = self.ooo.iter().position(|(s, _)| seq::gt(*s, seq_no)).unwrap_or(self.ooo.len());
        self.ooo.insert(at, (seq_no, data.to_vec()));
    }

    /// Copies readable bytes into `out`; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.ready.len());
        copy_out(&self.ready, 0, &mut out[..n]);
        self.ready.drain(..n);
        if self.ready.is_empty() && self.ready.capacity() > 64 * 1024 {
            self.ready.shrink_to(0);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_buffer_wraps() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.push(b"abcdef"), 6);
        b.release(4);
        assert_eq!(b.push(b"ghijklmn"), 6);
        let mut out = [0u8; 7];
        b.copy(1, &mut out);
        assert_eq!(&out, b"fghijkl");
        let (x, y) = b.slices(1, 7);
        assert_eq!([x, y].concat(), b"fghijkl");
        let (x, y) = b.slices(0, 2);
        assert_eq!([x, y].concat(), b"ef");
    }

    #[test]
    fn reassembles_out_of_order() {
        let mut r = RecvBuffer::new(100, 4);
        let base = u32::MAX - 3; // wraps inside
        assert_eq!(r.insert(base.wrapping_add(6), b"ghi", base), 0);
        assert_eq!(r.insert(base.wrapping_add(3), b"def", base), 0);
        assert_eq!(r.insert(base.wrapping_add(4), b"efgh", base), 0);
        assert_eq!(r.insert(base, b"abcd", base), 9);
        let mut out = [0u8; 20];
        let n = r.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghi");
        assert!(!r.has_out_of_order());
    }

    #[test]
    fn out_of_order_is_bounded() {
        let mut r = RecvBuffer::new(100, 2);
        r.insert(10, b"a", 0);
        r.insert(20, b"b", 0);
        r.insert(30, b"c", 0);
        assert_eq!(r.ooo_dropped, 1);
    }
}
