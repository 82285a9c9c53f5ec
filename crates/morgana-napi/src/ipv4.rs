//! IPv4 wire format and fragmentation bindings.

use crate::errors::failure;
use crate::out::{emit_at, fragments_into};
use morgana_net::fragment::fragment_into;
use morgana_net::wire::ipv4::{Ipv4Header, Ipv4Packet};
use napi_derive::napi;

// napi-derive reads a literal `&mut T` parameter as a class reference; through an alias the
// typed-array conversion (`FromNapiValue for &mut [T]`) applies, borrowing without a copy.
type BytesMut<'a> = &'a mut [u8];
type U32sMut<'a> = &'a mut [u32];

/// Validates an IPv4 packet (lengths, version, IHL, header checksum). Returns its total length
/// (so trailing padding can be cut off) or a negative error.
#[napi]
pub fn ipv4_validate(packet: &[u8], verify_checksum: bool) -> i32 {
    let parsed = if verify_checksum {
        Ipv4Packet::parse(packet)
    } else {
        Ipv4Packet::parse_unchecked_checksum(packet)
    };
    match parsed {
        Ok(p) => p.total_len() as i32,
        Err(e) => failure(e.code()),
    }
}

/// Header fields for [`ipv4_emit_header`]; addresses are big-endian 32-bit numbers.
#[napi(object)]
pub struct Ipv4HeaderFields {
    pub src: u32,
    pub dst: u32,
    pub protocol: u32,
    pub ttl: u32,
    pub tos: u32,
    pub identification: u32,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    pub fragment_offset: u32,
    pub payload_length: u32,
}

/// Writes an IPv4 header (checksum included) at `out[offset..]`. Returns the header length or
/// a negative error.
#[napi]
pub fn ipv4_emit_header(
    #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
    offset: u32,
    fields: Ipv4HeaderFields,
    options: Option<&[u8]>,
) -> i32 {
    let header = Ipv4Header {
        src: fields.src.to_be_bytes(),
        dst: fields.dst.to_be_bytes(),
        protocol: fields.protocol as u8,
        ttl: fields.ttl as u8,
        tos: fields.tos as u8,
        identification: fields.identification as u16,
        dont_fragment: fields.dont_fragment,
        more_fragments: fields.more_fragments,
        fragment_offset: fields.fragment_offset as usize,
        options: options.unwrap_or(&[]),
        payload_len: fields.payload_length as usize,
    };
    emit_at(out, offset, |out| header.emit(out).map_err(|e| e.code()))
}

/// Fragments `packet` for `mtu`, writing the packets back to back into `out` and their lengths
/// into `lengths`. Returns the number of packets or a negative error (`ERR_BUFFER_TOO_SMALL`
/// when `out` or `lengths` cannot hold the result).
#[napi]
pub fn ipv4_fragment(
    packet: &[u8],
    mtu: u32,
    #[napi(ts_arg_type = "Uint8Array")] out: BytesMut<'_>,
    #[napi(ts_arg_type = "Uint32Array")] lengths: U32sMut<'_>,
) -> i32 {
    fragments_into(out, lengths, |bytes, lens| {
        fragment_into(packet, mtu as usize, bytes, lens).map_err(|e| e.code())
    })
}
