//! The seed corpus: a few small, meaningful inputs per target, written by `src/bin/seeds.rs`
//! (and run by this crate's tests, so they stay valid).

use crate::reassembly::Op;
use crate::{fix_checksum, fragment, ipv6_reassembly, reassembly, PacketSpec};

/// Router Alert (copied) then Record Route (not copied, 7 bytes).
const OPTIONS: [u8; 11] = [0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0];

fn spec(flags: u8, options: &[u8], offset_units: u16, payload_len: u16) -> PacketSpec {
    PacketSpec {
        flags,
        options: options.to_vec(),
        offset_units,
        identification: 7,
        protocol: 17,
        payload_len,
    }
}

/// Every seed as (target, file name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add =
        |target: &'static str, name: &str, bytes: Vec<u8>| seeds.push((target, name.to_string(), bytes));

    // ipv4_parse: valid packets of several shapes, then broken ones.
    add("ipv4_parse", "plain", spec(1, &[], 0, 8).build());
    add("ipv4_parse", "options", spec(0, &OPTIONS, 0, 4).build());
    add("ipv4_parse", "fragment", spec(2, &[], 185, 16).build());
    add("ipv4_parse", "reserved-bit", spec(4, &[1, 1, 1, 1], 0, 0).build());
    let mut padded = spec(0, &[], 0, 6).build();
    padded.extend_from_slice(&[0; 20]);
    add("ipv4_parse", "ethernet-padding", padded);
    let mut bad_ihl = spec(0, &[], 0, 4).build();
    bad_ihl[0] = 0x44;
    fix_checksum(&mut bad_ihl);
    add("ipv4_parse", "bad-ihl", bad_ihl);
    add("ipv4_parse", "truncated", spec(0, &[], 0, 4).build()[..12].to_vec());
    add("ipv4_parse", "bad-options", spec(0, &[0x44, 40, 1, 1], 0, 0).build());

    // fragment: MTU, shuffle seed, packet.
    add("fragment", "4000-at-1500", fragment::encode(1500, 1, &spec(0, &[], 0, 4000)));
    add("fragment", "options-at-576", fragment::encode(576, 2, &spec(0, &OPTIONS, 0, 3000)));
    add("fragment", "minimum-mtu", fragment::encode(68, 3, &spec(0, &OPTIONS[..4], 0, 600)));
    add("fragment", "dont-fragment", fragment::encode(1500, 4, &spec(1, &[], 0, 2000)));
    add("fragment", "refragment", fragment::encode(1000, 5, &spec(2, &[], 100, 3000)));
    add("fragment", "fits", fragment::encode(1500, 6, &spec(0, &[], 0, 100)));
    add("fragment", "mtu-too-small", fragment::encode(40, 7, &spec(0, &OPTIONS, 0, 100)));

    // reassembly: limits, then operations.
    let split = |step, index| Op::Split { step, id: 1, len: 4999, mtu_step: 179, index };
    add(
        "reassembly",
        "split-any-order",
        reassembly::encode(65_535, 16, 10_000, &[split(1, 3), split(1, 1), split(0, 0), split(0, 2)]),
    );
    let piece = |id, offset_units, len_units, tail, more| Op::Piece {
        step: 1,
        id,
        offset_units,
        len_units,
        tail,
        more,
    };
    add(
        "reassembly",
        "pieces-duplicate-overlap",
        reassembly::encode(
            65_535,
            16,
            10_000,
            &[
                piece(1, 0, 2, 0, true),
                piece(1, 0, 2, 0, true),
                piece(1, 2, 1, 5, false),
                piece(2, 0, 4, 0, true),
                piece(2, 2, 4, 0, true),
            ],
        ),
    );
    add(
        "reassembly",
        "timeout",
        reassembly::encode(
            65_535,
            16,
            1000,
            &[piece(3, 0, 2, 0, true), Op::Expire { step: 200 }, piece(3, 2, 1, 0, false)],
        ),
    );
    add(
        "reassembly",
        "memory-pressure",
        reassembly::encode(
            16,
            4,
            10_000,
            &[piece(0, 0, 4, 0, true), piece(1, 0, 4, 0, true), piece(0, 4, 1, 0, true), split(2, 0)],
        ),
    );
    add(
        "reassembly",
        "flood",
        reassembly::encode(
            16,
            16,
            100,
            &[Op::Flood { step: 0, count: 90 }, split(1, 0), Op::Flood { step: 7, count: 99 }],
        ),
    );
    let raw = spec(2, &[], 1, 8).build();
    add(
        "reassembly",
        "raw-and-clock-jumps",
        reassembly::encode(
            1024,
            2,
            50,
            &[
                Op::Raw { step: 3, bytes: raw, fix: true },
                Op::Expire { step: 254 },
                piece(0, 1, 1, 0, false),
                Op::Expire { step: 255 },
            ],
        ),
    );

    // ipv6_reassembly: limits, report queue, then operations.
    use ipv6_reassembly::Op as Op6;
    let split6 = |step, index, routing| Op6::Split { step, id: 1, len: 4999, mtu_step: 153, index, routing };
    add(
        "ipv6_reassembly",
        "split-any-order",
        ipv6_reassembly::encode(
            65_535,
            16,
            10_000,
            16,
            &[split6(1, 3, true), split6(1, 1, true), split6(0, 0, true), split6(0, 2, true)],
        ),
    );
    let piece6 = |id, offset_units, len_units, tail, flags| Op6::Piece {
        step: 1,
        id,
        offset_units,
        len_units,
        tail,
        flags,
    };
    add(
        "ipv6_reassembly",
        "duplicate-overlap-discard",
        ipv6_reassembly::encode(
            65_535,
            16,
            10_000,
            16,
            &[
                piece6(1, 0, 2, 0, 1),
                piece6(1, 0, 2, 0, 1),
                piece6(1, 2, 1, 5, 2),
                piece6(2, 0, 4, 0, 1),
                piece6(2, 2, 4, 0, 1),
                piece6(2, 6, 1, 3, 0),
            ],
        ),
    );
    add(
        "ipv6_reassembly",
        "parameter-problems",
        ipv6_reassembly::encode(
            65_535,
            16,
            10_000,
            4,
            &[
                piece6(0, 0, 2, 5, 1 | 4),
                piece6(0, 0, 2, 5, 1 | 4 | 8),
                piece6(3, 0, 0, 4, 1 | 4 | 16),
                piece6(1, 0, 0, 4, 0),
                Op6::Split { step: 0, id: 2, len: 3000, mtu_step: 0, index: 0, routing: false },
            ],
        ),
    );
    add(
        "ipv6_reassembly",
        "timeout-time-exceeded",
        ipv6_reassembly::encode(
            65_535,
            16,
            1000,
            16,
            &[piece6(3, 0, 2, 0, 1 | 2), Op6::Expire { step: 200 }, piece6(3, 2, 1, 0, 0)],
        ),
    );
    add(
        "ipv6_reassembly",
        "flood-and-memory",
        ipv6_reassembly::encode(
            64,
            4,
            100,
            2,
            &[Op6::Flood { step: 0, count: 90 }, split6(1, 0, false), Op6::Flood { step: 7, count: 99 }],
        ),
    );
    let mut raw = vec![0x60; 48];
    raw.extend_from_slice(&[17, 0, 0, 8, 0, 0, 0, 9]);
    add(
        "ipv6_reassembly",
        "raw-and-clock-jumps",
        ipv6_reassembly::encode(
            1024,
            2,
            50,
            16,
            &[
                Op6::Raw { step: 3, bytes: raw, fix: true },
                Op6::Expire { step: 254 },
                piece6(0, 1, 1, 0, 0),
                Op6::Expire { step: 255 },
            ],
        ),
    );

    // tcp: the storm of issue 20 (a RST at B's SND.NXT, then a spoofed SYN past it), the
    // spoofed zero-window ACK, a SYN flood on a small backlog, a lossy connect; both families.
    use crate::tcp::{encode_forged, encode_forged_relative, encode_setup, ACK_FLAG, RST_FLAG, SYN_FLAG};
    let deliver =
        |out: &mut Vec<u8>| out.extend_from_slice(&[3, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for v6 in [false, true] {
        let family = if v6 { "v6" } else { "v4" };
        let mut storm = encode_setup(v6, 2, true, true, 4);
        encode_forged_relative(&mut storm, true, 0, RST_FLAG, 0);
        encode_forged_relative(&mut storm, true, 1000, SYN_FLAG, 65_535);
        deliver(&mut storm);
        add("tcp", &format!("ack-storm-{family}"), storm);

        let mut pin = encode_setup(v6, 2, false, true, 4);
        encode_forged_relative(&mut pin, false, 1000, ACK_FLAG, 0);
        pin.extend_from_slice(&[4, 255]);
        for _ in 0..20 {
            deliver(&mut pin);
            pin.extend_from_slice(&[2, 50]);
        }
        add("tcp", &format!("window-pin-{family}"), pin);

        let mut flood = encode_setup(v6, 0, true, true, 2);
        for i in 0..40u32 {
            encode_forged(&mut flood, true, Some(i.wrapping_mul(2_654_435_761)), None, SYN_FLAG, 65_535, 0);
            // A fresh source port for each: mode bit 2 takes it from the input.
            let at = flood.len() - 12;
            flood[at] |= 4;
            flood.splice(flood.len() - 1..flood.len() - 1, (i as u16 + 1000).to_be_bytes());
        }
        deliver(&mut flood);
        add("tcp", &format!("syn-flood-{family}"), flood);

        let mut lossy = encode_setup(v6, 1, true, false, 1);
        lossy.extend_from_slice(&[3, 1, 1, 2, 200, 3, 4, 0, 2, 3, 0, 4, 40, 3, 8, 0, 2, 0, 3, 0, 1, 0, 0]);
        lossy.extend_from_slice(&[6, 1, 2, 251]);
        deliver(&mut lossy);
        add("tcp", &format!("lossy-connect-{family}"), lossy);
    }

    // gso: super-frames of both families as the engine and Linux send them (MSS 1448 over
    // 64 KiB with FIN|PSH, timestamps; a tiny MSS; one piece), one with corrupted headers, and
    // a raw frame. Layout: mode, mss, payload length, options words, flags, seq, id, corruptions
    // (count, then position and XOR byte each), csum_start, csum_offset.
    let gso = |mode: u8, mss: u16, payload: u16, words: u8, flags: u8, corruptions: &[(u16, u8)]| {
        let mut out = vec![mode];
        out.extend_from_slice(&mss.to_be_bytes());
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[words, flags]);
        out.extend_from_slice(&0xfffe_0000u32.to_be_bytes());
        out.extend_from_slice(&0xfff0u16.to_be_bytes());
        out.push(corruptions.len() as u8);
        for (at, xor) in corruptions {
            out.extend_from_slice(&at.to_be_bytes());
            out.push(*xor);
        }
        out.extend_from_slice(&[0, 34, 16]);
        out
    };
    for v6 in [0u8, 1] {
        let family = if v6 == 1 { "v6" } else { "v4" };
        add("gso", &format!("64k-fin-psh-{family}"), gso(v6, 1448, 65_000, 3, 0x19 | 0x80, &[]));
        add("gso", &format!("tiny-mss-{family}"), gso(v6, 64, 9000, 0, 0x10, &[]));
        add("gso", &format!("one-piece-{family}"), gso(v6, 9000, 1000, 0, 0x18, &[]));
        add("gso", &format!("corrupted-{family}"), gso(v6, 1448, 20_000, 1, 0x10, &[(17, 0xff), (46, 0x70)]));
    }
    let mut raw = vec![2u8, 0x05, 0xa8];
    raw.extend_from_slice(&[0; 12]);
    raw.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0x05, 0xdc]);
    raw.extend_from_slice(&[0xaa; 60]);
    add("gso", "raw", raw);
    seeds
}
