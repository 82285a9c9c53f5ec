//! Engine memory per idle established connection, measured with a counting allocator
//! (issue 5 target: at most 4 KiB).

use morgana_tcp::{Config, Engine, EventKind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const A: u32 = 0x0a00_0001;
const B: u32 = 0x0a00_0002;

fn shuttle(from: &mut Engine, to: &mut Engine, now: u64) -> usize {
    from.poll(now);
    let out = from.output();
    let mut at = 0;
    let mut segments = Vec::new();
    for s in &out.segments {
        segments.push((s.src, s.dst, out.bytes[at..at + s.len as usize].to_vec()));
        at += s.len as usize;
    }
    from.clear_output();
    for (src, dst, bytes) in &segments {
        to.on_segment(*src, *dst, bytes, now);
    }
    segments.len()
}

#[test]
fn idle_connections_cost_less_than_4_kib_each() {
    const N: u32 = 10_000;
    let mut a = Engine::new(Config::default(), [1; 16]);
    let mut b = Engine::new(Config::default(), [2; 16]);
    b.listen(80, N).unwrap();
    // Warm the shared buffers (output, events, tables) so they are not counted per connection.
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..N {
        a.connect((A, 10_000 + (i % 50_000) as u16), (B + 1 + i / 50_000, 80), 0).unwrap();
    }
    for _ in 0..4 {
        shuttle(&mut a, &mut b, 0);
        shuttle(&mut b, &mut a, 0);
    }
    let accepted: Vec<u32> =
        b.take_events().filter(|e| matches!(e.kind, EventKind::Accepted(_))).map(|e| e.handle).collect();
    assert_eq!(accepted.len(), N as usize);
    for h in accepted {
        b.accept(h).unwrap();
    }
    let connected = a.take_events().filter(|e| e.kind == EventKind::Connected).count();
    assert_eq!(connected, N as usize);
    a.poll(0);
    b.poll(0);
    a.clear_output();
    b.clear_output();
    let after = LIVE.load(Ordering::Relaxed);
    let per_connection = (after - before) as f64 / f64::from(2 * N);
    eprintln!("{per_connection:.0} bytes per idle established connection (both engines, tables included)");
    assert!(per_connection < 4096.0, "{per_connection}");
}
