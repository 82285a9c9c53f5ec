//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The one's-complement sum does not depend on byte order (RFC 1071 §2(B)), so the bulk loop adds
//! native-endian 32-bit words into a 64-bit accumulator, which lets LLVM vectorise it, and the
//! result is swapped to network order once at the end. On x86-64 an AVX2 copy of the same loop is
//! chosen at run time when the CPU has it.
//!
//! Values in and out of this module are the numbers as they are stored big-endian in a header:
//! a checksum field holding bytes `0x12 0x34` is `0x1234`.

/// Bytes summed between folds of the 64-bit accumulator. Each 32-bit word adds at most
/// `2^32 - 1`, so 2^30 bytes (2^28 words) can never overflow 64 bits.
const FOLD_BLOCK: usize = 1 << 30;

/// Below this length the vector loop's set-up costs more than it saves.
#[cfg(target_arch = "x86_64")]
const AVX2_MIN_LEN: usize = 256;

/// Folds a 64-bit one's-complement accumulator into 16 bits (end-around carry).
#[inline]
fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// Adds `data` as native-endian 32-bit words, then the 0..3 trailing bytes padded with zeros
/// (the trailing odd byte is the high byte of a final big-endian word, RFC 1071).
#[inline(always)]
fn add_words_native(data: &[u8]) -> u64 {
    let words = data.chunks_exact(4);
    let tail = words.remainder();
    let mut acc: u64 = words.map(|w| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).sum();
    let mut padded = [0u8; 4];
    padded[..tail.len()].copy_from_slice(tail);
    acc += u64::from(u32::from_ne_bytes(padded));
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_words_avx2(data: &[u8]) -> u64 {
    add_words_native(data)
}

/// Sums one block of at most [`FOLD_BLOCK`] bytes, picking the widest loop the CPU supports.
#[inline]
fn add_block(block: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if block.len() >= AVX2_MIN_LEN && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just checked to support AVX2.
        return unsafe { add_words_avx2(block) };
    }
    add_words_native(block)
}

/// The 16-bit one's-complement sum of `data` (not complemented), continuing from `initial`.
///
/// `initial` lets sums chain: the sum of a pseudo-header, then of a header, then of a payload.
/// A chained piece must start at an even offset of the whole message, since an odd-length piece
/// is padded with a zero byte.
pub fn ones_complement_sum(data: &[u8], initial: u16) -> u16 {
    // `initial` is a big-endian value; place its bytes the way the native-endian loop sees them.
    let mut acc = u64::from(u16::from_ne_bytes(initial.to_be_bytes()));
    for block in data.chunks(FOLD_BLOCK) {
        acc = u64::from(fold(acc)) + add_block(block);
    }
    let native = fold(acc);
    u16::from_be_bytes(native.to_ne_bytes())
}

/// The value to store in a checksum field: the complement of the one's-complement sum of
/// `data`, continuing from `initial`. Over data whose checksum field is already correct it is 0.
pub fn checksum(data: &[u8], initial: u16) -> u16 {
    !ones_complement_sum(data, initial)
}

/// Adds two 16-bit values with end-around carry.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    let (sum, carry) = a.overflowing_add(b);
    sum + u16::from(carry)
}

/// Updates a stored checksum after one 16-bit word of the covered data changed from `old_word` to
/// `new_word` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`), without summing the data again.
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !add(add(!old_checksum, !old_word), new_word)
}

/// The one's-complement sum of the IPv4 pseudo-header for UDP and TCP (RFC 768, RFC 9293 §3.1):
/// source and destination addresses, protocol and the transport length. Pass it as `initial`
/// to [`checksum`] over the transport header and payload.
pub fn ipv4_pseudo_header_sum(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u16 {
    let words = [
        u16::from_be_bytes([src[0], src[1]]),
        u16::from_be_bytes([src[2], src[3]]),
        u16::from_be_bytes([dst[0], dst[1]]),
        u16::from_be_bytes([dst[2], dst[3]]),
        u16::from(protocol),
        length,
    ];
    words.into_iter().fold(0, add)
}

/// The one's-complement sum of the IPv6 pseudo-header for ICMPv6, UDP and TCP (RFC 8200 §8.1):
/// source and destination addresses, the 32-bit upper-layer packet length, three zero bytes and
/// the next-header value. `dst` is the final destination (the last address of a routing header),
/// `length` excludes the IPv6 header and extension headers before the upper-layer header.
pub fn ipv6_pseudo_header_sum(src: [u8; 16], dst: [u8; 16], next_header: u8, length: u32) -> u16 {
    let mut acc: u32 = 0;
    for pair in src.chunks_exact(2).chain(dst.chunks_exact(2)) {
        acc += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    acc += length >> 16;
    acc += length & 0xffff;
    acc += u32::from(next_header);
    // At most 16 words of 0xffff plus three more: far below 2^32.
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071's definition, word by word, as plainly as possible.
    fn reference_sum(data: &[u8], initial: u16) -> u16 {
        let mut acc: u32 = u32::from(initial);
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&data, 0), 0xddf2);
        assert_eq!(checksum(&data, 0), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A captured header whose checksum field (0xb861) is correct.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header, 0), 0);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed, 0), 0xb861);
    }

    #[test]
    fn empty_and_odd_lengths() {
        assert_eq!(checksum(&[], 0), 0xffff);
        assert_eq!(ones_complement_sum(&[0xab], 0), 0xab00);
        assert_eq!(ones_complement_sum(&[0xab, 0xcd, 0xef], 0), 0x9ace); // 0xabcd + 0xef00 with the carry wrapped around
    }

    #[test]
    fn pseudo_header() {
        let sum = ipv4_pseudo_header_sum([10, 0, 0, 1], [10, 0, 0, 2], 17, 8);
        let bytes = [10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 8];
        assert_eq!(sum, reference_sum(&bytes, 0));
        assert_eq!(ipv4_pseudo_header_sum([0; 4], [0; 4], 0, 0), 0);
    }

    #[test]
    fn ipv6_pseudo_header_by_hand() {
        // 2001:db8::1 -> 2001:db8::2, ICMPv6, 16 bytes. Words: 0x2001 + 0x0db8 + 0x0001 (source)
        // + 0x2001 + 0x0db8 + 0x0002 (destination) + 0x0000 + 0x0010 (length) + 0x003a
        // (next header) = 0x4002 + 0x1b70 + 0x0003 + 0x0010 + 0x003a = 0x5bbf (no carry).
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let mut dst = src;
        src[15] = 1;
        dst[15] = 2;
        assert_eq!(ipv6_pseudo_header_sum(src, dst, 58, 16), 0x5bbf);
        // All ones: 16 words of 0xffff (0xffff0), + 0x0001 + 0xffff (length 0x1ffff) + 0x00ff
        // (next header 255) = 0x1100ef, folded: 0x00ef + 0x11 = 0x0100.
        assert_eq!(ipv6_pseudo_header_sum([0xff; 16], [0xff; 16], 0xff, 0x1_ffff), 0x0100);
        // An ICMPv6 echo request (type 128, id 0x1234, seq 1, no data) from fe80::1 to fe80::2
        // whose checksum was computed by hand: pseudo-header 0xfe80 + 0x0001 + 0xfe80 + 0x0002 +
        // 0x0008 + 0x003a = 0x1fd45 -> 0xfd46; message 0x8000 + 0x1234 + 0x0001 = 0x9235; total
        // 0x18f7b -> 0x8f7c; checksum !0x8f7c = 0x7083. The message then verifies to 0.
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&[0xfe, 0x80]);
        let mut b = a;
        a[15] = 1;
        b[15] = 2;
        let echo = [0x80, 0x00, 0x70, 0x83, 0x12, 0x34, 0x00, 0x01];
        assert_eq!(checksum(&echo, ipv6_pseudo_header_sum(a, b, 58, 8)), 0);
    }

    proptest! {
        #[test]
        fn ipv6_pseudo_header_equals_reference(src: [u8; 16], dst: [u8; 16], next: u8, length: u32) {
            let mut bytes = Vec::with_capacity(40);
            bytes.extend_from_slice(&src);
            bytes.extend_from_slice(&dst);
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, next]);
            let sum = ipv6_pseudo_header_sum(src, dst, next, length);
            let reference = reference_sum(&bytes, 0);
            // 0x0000 and 0xffff are the same one's-complement number.
            prop_assert!(sum == reference || (sum | reference) == 0xffff && (sum & reference) == 0);
        }

        #[test]
        fn equals_reference(data in proptest::collection::vec(any::<u8>(), 0..4000), start in 0usize..8, initial: u16) {
            let slice = &data[start.min(data.len())..];
            prop_assert_eq!(ones_complement_sum(slice, initial), reference_sum(slice, initial));
        }

        #[test]
        fn chaining_at_even_offsets(data in proptest::collection::vec(any::<u8>(), 0..2000), cut in 0usize..1000) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(ones_complement_sum(b, ones_complement_sum(a, 0)), ones_complement_sum(&data, 0));
        }

        #[test]
        fn incremental_update_matches_recompute(data in proptest::collection::vec(any::<u8>(), 2..200), at in 0usize..100, new_word: u16) {
            let mut data = data;
            let at = (at * 2) % (data.len() & !1);
            let stored = checksum(&data, 0);
            let old_word = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new_word.to_be_bytes());
            let recomputed = checksum(&data, 0);
            let updated = update(stored, old_word, new_word);
            // 0x0000 and 0xffff are the same one's-complement number (RFC 1624 §3).
            prop_assert!(updated == recomputed || (updated | recomputed) == 0xffff && (updated & recomputed) == 0);
        }
    }
}
