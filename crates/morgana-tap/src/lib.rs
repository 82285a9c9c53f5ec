//! Morgana's Linux TAP I/O.
//!
//! - [`Tap::open`] opens `/dev/net/tun` as a TAP interface (`IFF_TAP | IFF_NO_PI`, non-blocking),
//!   optionally inside a named network namespace: the open runs on a short-lived thread that
//!   first joins the namespace with `setns(2)`, which affects only that thread. The interface is
//!   created in the namespace and the descriptor keeps working from any thread afterwards.
//! - With [`TapOptions::vnet_hdr`], the interface is opened with `IFF_VNET_HDR`, a 12-byte
//!   `virtio_net_hdr` ([`VNET_HDR_LEN`], `TUNSETVNETHDRSZ`) in front of every frame both ways,
//!   and `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)`: the kernel hands over GRO'd TCP
//!   frames of up to 64 KiB and frames whose checksum is left to us (`NEEDS_CSUM`), and accepts
//!   GSO super-frames, which it segments itself. A kernel that refuses the header gives a plain
//!   TAP ([`Tap::vnet_hdr`] says which); [`WriterConfig::for_offload`] sizes the ring for it.
//! - [`Tap::spawn_writer`] starts a [`Writer`]: frames go into a bounded ring and a dedicated
//!   thread writes them to the descriptor, one `write(2)` per frame, in order.
//!   [`Tap::write`] writes one frame on the calling thread instead.
//! - [`Tap::spawn_reader`] starts a [`Reader`]: a dedicated thread that sleeps in `poll(2)` on
//!   the TAP descriptor and a stop `eventfd`, drains every frame that is ready (up to a batch cap)
//!   into one buffer plus a lengths array, and hands the [`Batch`] to a callback: one call per
//!   wake-up, never one per frame.
//! - [`drain`] reads the frames that are ready into buffers the caller owns and reuses, with no
//!   thread: for a reader on someone else's event loop (Node's, in the napi binding).
//!
//! # Why transmission has a thread of its own
//!
//! Writing a frame to a TAP device is not a copy into a queue: `tun_get_user` calls
//! `netif_receive_skb` under `local_bh_disable`, so the kernel's whole receive path (bridge,
//! IP, the kernel's TCP, and the ACK it sends back through our read queue) runs inside our
//! `write(2)`. Measured on bulk TCP over TAP, that was ~40 % of the JS thread's time and
//! stalled the event loop for up to ~300 ms. The [`Writer`] moves it to a thread, which can run
//! on another core while JavaScript assembles the next segments.
//!
//! Design decisions (see `writer.rs` and `ring.rs` for the details):
//! - **A single-producer ring of fixed-size slots**, preallocated ([`WriterConfig::for_mtu`]:
//!   `mtu + 14`-byte slots, 1024 of them or 4 MiB, at least 64), so queueing a frame allocates
//!   nothing. The slab can be lent to JavaScript as one external `Buffer` ([`Slab`]): the caller
//!   fills the reserved slot in place and commits its length, so a frame is written once, by its
//!   producer, and read once, by the kernel; a caller that cannot use the slab copies a frame in
//!   ([`Writer::push`]).
//! - **Wake-ups only when idle.** A commit unparks the thread, which is one atomic swap while it
//!   is busy and a futex wake only when it is parked; before parking, the thread polls the empty
//!   ring for 20 µs to catch the rest of a burst.
//! - **Small exchanges stay inline.** The hop to another thread costs ~3 µs of CPU per frame
//!   (wake-up, context switch): a 64-in-flight UDP echo lost 20 % of its rate to it.
//!   [`Writer::send`] writes a frame on the caller's thread when nothing is queued, and the JS
//!   device allows that for the first 32 frames of an event-loop turn: responses, ACKs and
//!   pings go out as before, while a burst (a TCP window) goes to the thread after its first
//!   32 frames, so the kernel time spent on the JS thread per turn stays bounded (a few hundred
//!   microseconds) however much is sent.
//! - **A starved thread is assisted.** A caller that finds the ring full while the thread is
//!   not writing (it waits for a core on a busy machine) writes the queued frames itself, in
//!   order ([`WriterConfig::assist`]): on a loaded 2-core machine a TCP sender otherwise lost
//!   a ring of frames every few seconds, and each loss cost it a retransmission timeout.
//! - **A full ring waits, briefly, then drops and counts.** A caller with a frame sleeps up to
//!   1 ms ([`WriterConfig::max_wait`]) until the thread has freed a sixteenth of the ring: while
//!   the thread runs this paces the caller to the kernel, as the blocking write did, instead of
//!   losing frames (a UDP flood lost 60 % of its datagrams to a drop-only ring). If no room
//!   frees in time, the frame is dropped and counted ([`WriterStats::full`]), as a NIC drops on
//!   a full transmit queue (the NET device interface, `write(size, fill)`, has no
//!   backpressure; TCP recovers), and frames are dropped without waiting until room returns.
//!   1024 slots match the kernel's default `txqueuelen` of 1000.
//! - **Close flushes.** [`Writer::stop`] writes what is queued (at most one ring of
//!   non-blocking writes, so the last segments of a closing stack still leave), joins the
//!   thread, and freezes the counters; nothing is written afterwards.
//! - **Not used:** `writev` (a TAP write is one frame, so it cannot batch frames); `sendmmsg`
//!   (sockets only; the tun driver's batched `sendmsg` with `MSG_MORE` / `TUN_MSG_PTR` is
//!   reachable only from vhost-net inside the kernel); `IFF_NAPI` (a `write(2)` without
//!   `MSG_MORE` schedules NAPI and runs the softirq on the same thread before returning, so
//!   the work stays where it was, and GRO sees one frame per poll); `IFF_MULTI_QUEUE` (more
//!   descriptors and threads, for more cores than the two this path keeps busy).
//!
//! - [`Tap::adopt`] takes a TAP descriptor opened elsewhere, and [`fdpass`] hands descriptors
//!   between processes (`SCM_RIGHTS`), for namespaces this process may not enter.
//!
//! This crate knows nothing about JavaScript; `morgana-napi` wraps it.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod error;
pub mod fdpass;
pub mod gro;
mod reader;
mod ring;
mod sys;
mod tap;
mod writer;

pub use error::{TapError, TapErrorKind};
pub use reader::{drain, Batch, Delivery, Drained, Reader, ReaderConfig, ReaderStats, READ_WINDOW};
pub use ring::Refused;
pub use tap::{Tap, TapOptions, VNET_HDR_LEN, WANTED_OFFLOADS};
pub use writer::{
    Sent, Slab, Writer, WriterConfig, WriterStats, MAX_OFFLOAD_FRAME, MAX_TX_SLOTS, MIN_TX_SLOTS,
    OFFLOAD_RING_BYTES, TX_RING_BYTES,
};
