//! The few system calls this crate makes, each wrapped once with its safety argument.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Interface names are at most `IFNAMSIZ - 1` bytes.
pub(crate) const IFNAMSIZ: usize = libc::IFNAMSIZ;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `open(2)` with `O_CLOEXEC` added.
pub(crate) fn open(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setns(fd, CLONE_NEWNET)`: moves the calling thread into the network namespace of `fd`.
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a live descriptor; it changes only the calling thread's namespace.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// A zeroed `ifreq` with `name` copied in (the caller has checked its length).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a name array and a union of integers, sockaddrs and
    // pointers), for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes().take(IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    ifr
}

/// `ioctl(TUNSETIFF)` with `flags`; returns the interface name the kernel chose (it expands
/// `%d` patterns).
pub(crate) fn tun_set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> io::Result<String> {
    let mut ifr = ifreq(name);
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifr` is, for the duration of
    // the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr as *mut libc::ifreq) })?;
    let bytes: Vec<u8> = ifr.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `ioctl(TUNGETIFF)`: the flags the descriptor's interface was attached with (`IFF_TAP`,
/// `IFF_NO_PI`, `IFF_VNET_HDR`, …).
pub(crate) fn tun_get_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut ifr = ifreq("");
    // SAFETY: TUNGETIFF writes one `struct ifreq`, which `ifr` is, for the duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut ifr as *mut libc::ifreq) })?;
    // SAFETY: TUNGETIFF filled in the flags member of the union.
    Ok(libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags }) & 0xffff)
}

/// `ioctl(TUNSETVNETHDRSZ)`: the length of the `virtio_net_hdr` in front of every frame.
pub(crate) fn tun_set_vnet_hdr_size(fd: BorrowedFd<'_>, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size as *const libc::c_int) }).map(drop)
}

/// `ioctl(TUNSETOFFLOAD)`: the offloads (`TUN_F_*`) the reader of this descriptor accepts.
pub(crate) fn tun_set_offload(fd: BorrowedFd<'_>, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), no memory is shared.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) }).map(drop)
}

/// Sets the MTU of interface `name` in the calling thread's network namespace (`SIOCSIFMTU`
/// through a throw-away datagram socket).
pub(crate) fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    // SAFETY: plain syscall creating a new descriptor.
    let raw = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `socket` just returned this descriptor and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = ifreq(name);
    ifr.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU reads one `struct ifreq`, which `ifr` is, for the duration of the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &mut ifr as *mut libc::ifreq) }).map(drop)
}

/// A non-blocking, close-on-exec `eventfd` starting at zero.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall creating a new descriptor.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `eventfd` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd counter, waking its pollers.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one`, which live across the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if n == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `read(2)` into `buf`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into memory we borrow mutably.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)` of `buf`.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from memory we borrow.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)` of `len` bytes at `ptr`, for memory that must not be borrowed as a slice.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes for the duration of the call.
pub(crate) unsafe fn write_raw(fd: BorrowedFd<'_>, ptr: *const u8, len: usize) -> io::Result<usize> {
    // SAFETY: the caller guarantees `len` readable bytes at `ptr`; the kernel only reads them.
    let n = unsafe { libc::write(fd.as_raw_fd(), ptr.cast(), len) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `writev(2)` of `head` then `body` as one frame.
pub(crate) fn writev2(fd: BorrowedFd<'_>, head: &[u8], body: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec { iov_base: head.as_ptr().cast_mut().cast(), iov_len: head.len() },
        libc::iovec { iov_base: body.as_ptr().cast_mut().cast(), iov_len: body.len() },
    ];
    // SAFETY: both iovecs describe memory we borrow for the call; the kernel only reads it.
    let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), 2) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Waits until `a` (when given) or `b` is readable (no timeout); returns their `revents`.
pub(crate) fn poll2(
    a: Option<BorrowedFd<'_>>,
    b: BorrowedFd<'_>,
) -> io::Result<(libc::c_short, libc::c_short)> {
    let mut fds = [
        // A negative descriptor is ignored by poll(2).
        libc::pollfd { fd: a.map_or(-1, |fd| fd.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: `fds` is an array of two initialised pollfd structs that outlives the call.
    cvt(unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) })?;
    Ok((fds[0].revents, fds[1].revents))
}

/// Resets an eventfd counter (non-blocking: a zero counter is fine).
pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut value = [0u8; 8];
    let _ = read(fd, &mut value);
}
