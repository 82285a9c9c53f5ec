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
    /// Bytes released so far: the stream position of the first byte held.
    released: u64,
}

impl SendBuffer {
    /// An empty buffer holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        SendBuffer { data: VecDeque::new(), capacity, released: 0 }
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
        self.released += n as u64;
        if self.data.is_empty() && self.data.capacity() > 64 * 1024 {
            // Idle connections should not pin a large allocation.
            self.data.shrink_to(0);
        }
    }

    /// Copies `out.len()` bytes starting `offset` bytes after SND.UNA.
    pub fn copy(&self, offset: usize, out: &mut [u8]) {
        copy_out(&self.data, offset, out);
    }

    /// The stream position (bytes pushed before it, counted from the first byte ever pushed)
    /// of the byte `offset` bytes after SND.UNA: a name for that byte that stays valid while
    /// earlier bytes are released.
    pub fn position(&self, offset: usize) -> u64 {
        self.released + offset as u64
    }

    /// The `len` bytes from stream position `position` on (see [`SendBuffer::position`]), as at
    /// most two slices; `None` when any of them was released or was never pushed.
    pub fn slices_at(&self, position: u64, len: usize) -> Option<(&[u8], &[u8])> {
        let offset = usize::try_from(position.checked_sub(self.released)?).ok()?;
        if offset.checked_add(len)? > self.data.len() {
            return None;
        }
        Some(self.slices(offset, len))
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
///
/// Out-of-order data is kept as merged, disjoint ranges: contiguous segments that arrive after a
/// hole join one range, so a single loss costs one range however many segments follow it. The
/// bytes held are bounded by the window (the caller trims every segment to it), the number of
/// ranges by `max_ooo`.
#[derive(Debug)]
pub struct RecvBuffer {
    ready: VecDeque<u8>,
    capacity: usize,
    /// Out-of-order ranges (sequence number, bytes), sorted, disjoint and not adjacent.
    ooo: Vec<(u32, Vec<u8>)>,
    max_ooo: usize,
    /// Start of the range the latest out-of-order segment went into (the first SACK block).
    latest: Option<u32>,
    /// Out-of-order segments dropped because `max_ooo` ranges were already held.
    pub ooo_dropped: u64,
}

impl RecvBuffer {
    /// An empty buffer: `capacity` bytes of window, at most `max_ooo` out-of-order ranges.
    pub fn new(capacity: usize, max_ooo: usize) -> Self {
        RecvBuffer {
            ready: VecDeque::new(),
            capacity,
            ooo: Vec::new(),
            max_ooo,
            latest: None,
            ooo_dropped: 0,
        }
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

    /// The most out-of-order ranges held.
    pub fn max_out_of_order(&self) -> usize {
        self.max_ooo
    }

    /// Whether out-of-order data is held.
    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Bytes held out of order.
    pub fn out_of_order_bytes(&self) -> usize {
        self.ooo.iter().map(|(_, d)| d.len()).sum()
    }

    /// The out-of-order ranges `[left, right)` in sequence order.
    pub fn out_of_order_blocks(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.ooo.iter().map(|(s, d)| (*s, s.wrapping_add(d.len() as u32)))
    }

    /// Fills `out` with SACK blocks (RFC 2018 §4): first the range holding the latest
    /// out-of-order segment, then the others in sequence order. Returns how many.
    pub fn sack_blocks(&self, out: &mut [(u32, u32)]) -> usize {
        let mut n = 0;
        let latest = self.latest.and_then(|l| self.out_of_order_blocks().find(|&(s, _)| s == l));
        if let Some(b) = latest {
            if n < out.len() {
                out[n] = b;
                n += 1;
            }
        }
        for b in self.out_of_order_blocks() {
            if n == out.len() {
                break;
            }
            if Some(b) != latest {
                out[n] = b;
                n += 1;
            }
        }
        n
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
        // Pull in every held range the new bytes reached.
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
        if self.ooo.is_empty() {
            self.latest = None;
        }
        advanced
    }

    fn insert_out_of_order(&mut self, seq_no: u32, data: &[u8]) {
        let end = seq_no.wrapping_add(data.len() as u32);
        let range_end = |(s, d): &(u32, Vec<u8>)| s.wrapping_add(d.len() as u32);
        // The ranges this segment overlaps or touches: `first..last`.
        let first = self.ooo.iter().position(|r| seq::ge(range_end(r), seq_no)).unwrap_or(self.ooo.len());
        let mut last = first;
        while last < self.ooo.len() && seq::le(self.ooo[last].0, end) {
            last += 1;
        }
        if first == last {
            if self.ooo.len() >= self.max_ooo {
                self.ooo_dropped += 1;
                return;
            }
            self.ooo.insert(first, (seq_no, data.to_vec()));
            self.latest = Some(seq_no);
            return;
        }
        let (mut start, mut bytes) = std::mem::take(&mut self.ooo[first]);
        if seq::lt(seq_no, start) {
            let mut joined = Vec::with_capacity(bytes.len() + seq::diff(start, seq_no) as usize);
            joined.extend_from_slice(&data[..seq::diff(start, seq_no) as usize]);
            joined.extend_from_slice(&bytes);
            bytes = joined;
            start = seq_no;
        }
        let held_end = start.wrapping_add(bytes.len() as u32);
        if seq::gt(end, held_end) {
            bytes.extend_from_slice(&data[seq::diff(held_end, seq_no) as usize..]);
        }
        for (s, d) in self.ooo.drain(first + 1..last) {
            let held_end = start.wrapping_add(bytes.len() as u32);
            let d_end = s.wrapping_add(d.len() as u32);
            if seq::gt(d_end, held_end) {
                bytes.extend_from_slice(&d[seq::diff(held_end, s) as usize..]);
            }
        }
        self.ooo[first] = (start, bytes);
        self.latest = Some(start);
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

    /// Regression (kernel interop over TAP, issue 5): one lost segment followed by a full window
    /// of contiguous segments used to fill the 64-entry out-of-order list after 64 segments and
    /// drop the rest, so Linux had to resend most of every window (20 MiB uploaded as 48 MB).
    /// Contiguous segments now merge into one range.
    #[test]
    fn contiguous_out_of_order_segments_merge_into_one_range() {
        let mss = 1448;
        let mut r = RecvBuffer::new(512 * 1024, 4);
        let segment = |i: usize| -> Vec<u8> { (0..mss).map(|j| (i * 7 + j) as u8).collect() };
        let base = u32::MAX - 5000; // wraps inside
        for i in 1..300 {
            assert_eq!(r.insert(base.wrapping_add((i * mss) as u32), &segment(i), base), 0);
        }
        assert_eq!(r.ooo_dropped, 0);
        assert_eq!(r.out_of_order_blocks().count(), 1);
        assert_eq!(r.out_of_order_bytes(), 299 * mss);
        assert_eq!(r.insert(base, &segment(0), base), 300 * mss);
        let mut out = vec![0u8; 300 * mss];
        assert_eq!(r.read(&mut out), 300 * mss);
        for i in 0..300 {
            assert_eq!(&out[i * mss..(i + 1) * mss], &segment(i)[..], "segment {i}");
        }
    }

    #[test]
    fn ranges_merge_across_gaps_and_report_the_latest_first() {
        let mut r = RecvBuffer::new(100, 3);
        r.insert(10, b"kl", 0);
        r.insert(20, b"uv", 0);
        r.insert(30, b"EF", 0);
        let mut sack = [(0, 0); 4];
        assert_eq!(r.sack_blocks(&mut sack), 3);
        assert_eq!(&sack[..3], &[(30, 32), (10, 12), (20, 22)]);
        // Prepend, bridge two ranges, overlap both ends.
        r.insert(8, b"ij", 0);
        r.insert(11, b"lmnopqrstu", 0);
        assert_eq!(r.out_of_order_blocks().collect::<Vec<_>>(), vec![(8, 22), (30, 32)]);
        assert_eq!(r.sack_blocks(&mut sack), 2);
        assert_eq!(&sack[..2], &[(8, 22), (30, 32)]);
        r.insert(21, b"vwxyzABCDEFG", 0);
        assert_eq!(r.out_of_order_blocks().collect::<Vec<_>>(), vec![(8, 33)]);
        assert_eq!(r.insert(0, b"abcdefgh", 0), 33);
        let mut out = [0u8; 40];
        let n = r.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmnopqrstuvwxyzABCDEFG");
        assert_eq!(r.sack_blocks(&mut sack), 0);
    }
}
