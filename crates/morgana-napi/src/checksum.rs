//! Internet checksum bindings.

use crate::errors::failure;
use morgana_net::checksum;
use napi_derive::napi;

/// The value to store in a checksum field over `data`, continuing from `initial`.
#[napi(js_name = "checksum")]
pub fn checksum_of(data: &[u8], initial: u32) -> u32 {
    u32::from(checksum::checksum(data, initial as u16))
}

/// The 16-bit one's-complement sum of `data` (not complemented), continuing from `initial`.
#[napi]
pub fn ones_complement_sum(data: &[u8], initial: u32) -> u32 {
    u32::from(checksum::ones_complement_sum(data, initial as u16))
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changed.
#[napi]
pub fn checksum_update(old_checksum: u32, old_word: u32, new_word: u32) -> u32 {
    u32::from(checksum::update(old_checksum as u16, old_word as u16, new_word as u16))
}

/// The IPv4 pseudo-header sum; addresses are big-endian 32-bit numbers.
#[napi]
pub fn pseudo_header_sum(src: u32, dst: u32, protocol: u32, length: u32) -> u32 {
    u32::from(checksum::ipv4_pseudo_header_sum(
        src.to_be_bytes(),
        dst.to_be_bytes(),
        protocol as u8,
        length as u16,
    ))
}

/// The IPv6 pseudo-header sum (RFC 8200 §8.1); addresses are 16-byte arrays. Returns the sum or
/// a negative error when an address is not 16 bytes.
#[napi]
pub fn pseudo_header_sum6(src: &[u8], dst: &[u8], next_header: u32, length: u32) -> i32 {
    let (Ok(src), Ok(dst)) = (<[u8; 16]>::try_from(src), <[u8; 16]>::try_from(dst)) else {
        return failure("ERR_IPV6_BAD_ADDRESS_LENGTH");
    };
    i32::from(checksum::ipv6_pseudo_header_sum(src, dst, next_header as u8, length))
}
