//! IPv6 wire format and fragmentation bindings.

use crate::errors::failure;
use crate::out::{emit_at, fragments_into};
use morgana_net::fragment::ipv6::{fragment_into, fragment_size};
use morgana_net::wire::ipv6::{Ipv6Header, Ipv6Packet, MAX_EXTENSION_HEADERS};
use napi_derive::napi;

// napi-derive reads a literal `&mut T` parameter as a class reference; through an alias the
// typed-array conversion applies, borrowing the caller's memory without a copy.
type BytesMut<'a> = &'a mut [u8];
type U32sMut<'a> = &'a mut [u32];

/// Slots of `ipv6_parse`'s result array before the extension triplets.
const FIXED_SLOTS: usize = 9;

/// Length `ipv6_parse`'s result array must have.
#[napi]
pub const IPV6_PARSE_SLOTS: u32 = (FIXED_SLOTS + 3 * MAX_EXTENSION_HEADERS) as u32;

/// Validates an IPv6 packet and walks its extension headers, writing into `out`:
/// `[packet length, next header, next-header pointer, payload offset, has fragment header,
/// fragment offset, more fragments, identification, extension count, (kind, offset, length)…]`.
/// Returns the number of slots written, or a negative error after writing the parameter-problem
/// pointer (or -1 when there is none) into `out[0]`.
#[napi]
pub fn ipv6_parse(packet: &[u8], #[napi(ts_arg_type = "Uint32Array")] out: U32sMut<'_>) -> i32 {
    if out.len() < IPV6_PARSE_SLOTS as usize {
        return failure("ERR_BUFFER_TOO_SMALL");
    }
    let parsed = Ipv6Packet::parse(packet).and_then(|p| Ok((p, p.extensions()?)));
    let (p, ext) = match parsed {
        Ok(found) => found,
        Err(e) => {
            out[0] = e.pointer().map_or(u32::MAX, |at| at as u32);
            return failure(e.code());
        }
    };
    let fragment = ext.fragment;
    let headers = ext.headers();
    out[0] = p.as_bytes().len() as u32;
    out[1] = u32::from(ext.next_header);
    out[2] = ext.next_header_pointer as u32;
    out[3] = ext.payload_offset as u32;
    out[4] = u32::from(fragment.is_some());
    out[5] = fragment.map_or(0, |f| f.offset as u32);
    out[6] = u32::from(fragment.is_some_and(|f| f.more_fragments));
    out[7] = fragment.map_or(0, |f| f.identification);
    out[8] = headers.len() as u32;
    for (slot, h) in out[FIXED_SLOTS..].chunks_exact_mut(3).zip(headers) {
        slot[0] = u32::from(h.kind);
        slot[1] = h.offset as u32;
        slot[2] = h.len as u32;
    }
    (FIXED_SLOTS + 3 * headers.len()) as i32
}

/// Header fields for [`ipv6_emit_header`]; addresses are 16-byte arrays.
#[napi(object)]
pub struct Ipv6HeaderFields {
    pub traffic_class: u32,
    pub flow_label: u32,
    pub next_header: u32,
    pub hop_limit: u32,
    pub payload_length: u32,
}

/// Writes a fixed IPv6 header at `out[offset..]`. Returns its length (40) or a negative error.
#[napi]
pub fn ipv6_emit_header(
    #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
    offset: u32,
    fields: Ipv6HeaderFields,
    src: &[u8],
    dst: &[u8],
) -> i32 {
    let (Ok(src), Ok(dst)) = (<[u8; 16]>::try_from(src), <[u8; 16]>::try_from(dst)) else {
        return failure("ERR_IPV6_BAD_ADDRESS_LENGTH");
    };
    let header = Ipv6Header {
        traffic_class: fields.traffic_class as u8,
        flow_label: fields.flow_label,
        next_header: fields.next_header as u8,
        hop_limit: fields.hop_limit as u8,
        src,
        dst,
        payload_len: fields.payload_length as usize,
    };
    emit_at(out, offset, |out| header.emit(out).map_err(|e| e.code()))
}

/// Writes into `out[0..2]` the number of packets and bytes `ipv6_fragment` produces for `packet`
/// at `mtu`. Returns 0 or a negative error (the errors `ipv6_fragment` would return).
#[napi]
pub fn ipv6_fragment_size(
    packet: &[u8],
    mtu: u32,
    #[napi(ts_arg_type = "Uint32Array")] out: U32sMut<'_>,
) -> i32 {
    if out.len() < 2 {
        return failure("ERR_BUFFER_TOO_SMALL");
    }
    match fragment_size(packet, mtu as usize) {
        Ok((count, bytes)) => {
            out[0] = count as u32;
            out[1] = bytes as u32;
            0
        }
        Err(e) => failure(e.code()),
    }
}

/// Fragments `packet` for `mtu` with Fragment headers carrying `identification`, writing the
/// packets back to back into `out` and their lengths into `lengths`. Returns the number of
/// packets or a negative error (`ERR_BUFFER_TOO_SMALL` when `out` or `lengths` cannot hold the
/// result).
#[napi]
pub fn ipv6_fragment(
    packet: &[u8],
    mtu: u32,
    identification: u32,
    #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
    #[napi(ts_arg_type = "Uint32Array")] lengths: U32sMut<'_>,
) -> i32 {
    fragments_into(out, lengths, |bytes, lens| {
        fragment_into(packet, mtu as usize, identification, bytes, lens).map_err(|e| e.code())
    })
}
