//! A connection opened by a SYN cookie keeps window scaling, SACK and timestamps: the cookie
//! SYN-ACK's TSval carries the peer's window shift and SACK-permitted (crate::syncookie), and
//! the connection rebuilt from the ACK's TSecr uses all three.

mod common;

use common::link::{pattern, Link, A, B};
use morgana_tcp::wire::{TcpHeader, TcpOptions, ACK, SYN};
use morgana_tcp::{Config, Engine, IpAddr};
use std::net::Ipv4Addr;

fn big(timestamps: bool) -> Config {
    Config { send_buffer: 4 << 20, recv_buffer: 4 << 20, timestamps, ..Config::default() }
}

/// Fills B's SYN queue (backlog 1) with a half-open connection from an address that never
/// answers, so the next SYN gets a cookie.
fn fill_syn_queue(b: &mut Engine) {
    b.listen(80, 1).unwrap();
    let spoofed = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99));
    let syn =
        TcpHeader { src_port: 1234, dst_port: 80, seq: 7, flags: SYN, window: 1000, ..TcpHeader::default() };
    common::inject(b, &syn, &[], spoofed, B, 0);
    b.clear_output();
    assert_eq!(b.stats().half_open, 1);
}

#[test]
fn a_cookie_connection_keeps_window_scaling_sack_and_timestamps() {
    let mut link = Link::new(big(true), big(true), 10);
    fill_syn_queue(&mut link.b);
    // Losses in B's data: recovering from them without a timeout needs SACK.
    link.from_b.drop_nth = vec![100, 103, 107, 140];
    let up = pattern(1 << 20, 1);
    let down = pattern(3 << 20, 2);
    let mut a_stats = None;
    let (got_up, got_down, _) = link.transfer(&up, &down, |l, h| a_stats = l.a.conn_stats(h).or(a_stats));
    assert!(got_up == up && got_down == down, "data intact both ways");
    let s = link.b.stats();
    assert_eq!((s.syn_cookies_sent, s.syn_cookies_accepted, s.half_open), (1, 1, 1));

    // The cookie SYN-ACK offers all three, and its TSval's low bits encode A's options:
    // window shift 7 (4 MiB buffer) and SACK-permitted.
    let syn_ack = link.from_b.log.iter().find(|p| p.1.has(SYN)).unwrap().1;
    assert_eq!(syn_ack.options.window_scale, Some(7));
    assert!(syn_ack.options.sack_permitted);
    let (tsval, _) = syn_ack.options.timestamps.unwrap();
    assert_eq!(tsval & 0x3f, 0x10 | 7);

    let hb = link.hb.unwrap();
    let server = link.b.conn_stats(hb).unwrap();
    assert!(server.timestamps && server.sack, "{server:?}");
    assert_eq!(server.window_scale, Some((7, 7)));
    assert!(server.sack_recoveries >= 1 && server.timeouts == 0, "{server:?}");
    assert!(server.send_window > 65_535, "A's window is scaled: {}", server.send_window);
    // RTT measured from timestamps: 2 × 10 ms.
    let srtt = server.srtt_ms.unwrap();
    assert!((20.0..26.0).contains(&srtt), "{srtt}");
    assert_eq!(server.smss, 1460 - 12, "the cookie's MSS less the timestamp option");
    let client = a_stats.unwrap();
    assert!(client.timestamps && client.sack && client.window_scale == Some((7, 7)), "{client:?}");
    // Every segment after the handshake carries timestamps, and B's TSvals never go backwards
    // (A's PAWS would drop them).
    let mut last = tsval;
    for (_, h, _) in link.from_b.log.iter().skip(1) {
        let (val, _) = h.options.timestamps.expect("timestamps on every segment");
        assert!((val.wrapping_sub(last) as i32) >= 0, "TSval went back from {last} to {val}");
        last = val;
    }
    assert_eq!(link.a.stats().paws_rejected, 0);
}

#[test]
fn without_timestamps_a_cookie_connection_goes_without_the_options() {
    let mut link = Link::new(big(false), big(true), 10);
    fill_syn_queue(&mut link.b);
    let up = pattern(300_000, 3);
    let (got, _, _) = link.transfer(&up, &[], |_, _| {});
    assert!(got == up);
    assert_eq!(link.b.stats().syn_cookies_accepted, 1);
    let server = link.b.conn_stats(link.hb.unwrap()).unwrap();
    assert!(!server.timestamps && !server.sack && server.window_scale.is_none(), "{server:?}");
    assert!(server.send_window <= 65_535);
}

#[test]
fn a_cookie_ack_echoing_an_encoding_never_sent_is_refused() {
    let mut b = Engine::new(big(true), [5; 16]);
    fill_syn_queue(&mut b);
    let options = TcpOptions {
        mss: Some(1460),
        window_scale: Some(3),
        sack_permitted: true,
        timestamps: Some((1000, 0)),
        ..TcpOptions::default()
    };
    common::inject(&mut b, &common::syn(4321, 100, options), &[], A, B, 0);
    let out = common::drain(&mut b);
    let (syn_ack, _) = TcpHeader::parse(&out[0].2, Some((B, A))).unwrap();
    assert_eq!(b.stats().syn_cookies_sent, 1);
    let (tsval, ecr) = syn_ack.options.timestamps.unwrap();
    assert_eq!((tsval & 0x3f, ecr), (0x10 | 3, 1000));
    let ack = |tsecr: u32| {
        let h = TcpHeader {
            src_port: 4321,
            dst_port: 80,
            seq: 101,
            ack: syn_ack.seq.wrapping_add(1),
            flags: ACK,
            window: 1000,
            options: TcpOptions { timestamps: Some((1001, tsecr)), ..TcpOptions::default() },
            ..TcpHeader::default()
        };
        let mut buf = [0u8; 60];
        let n = h.emit(&mut buf, &[], A, B).unwrap();
        buf[..n].to_vec()
    };
    // The reserved bit set: refused and reset.
    b.on_segment(A, B, &ack(tsval | 0x20), 0);
    assert_eq!((b.stats().syn_cookies_invalid, b.stats().syn_cookies_accepted), (1, 0));
    assert_eq!(b.stats().resets_sent, 1);
    // The genuine echo opens the connection with the peer's shift 3 and SACK.
    b.on_segment(A, B, &ack(tsval), 0);
    assert_eq!(b.stats().syn_cookies_accepted, 1);
    let h = b.take_events().next_back().unwrap().handle;
    let c = b.conn_stats(h).unwrap();
    assert!(c.timestamps && c.sack && c.window_scale == Some((3, 7)), "{c:?}");
    assert_eq!(c.send_window, 1000 << 3, "the ACK's window is scaled");
}
