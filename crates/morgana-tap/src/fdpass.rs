//! Handing TAP descriptors between processes over a UNIX socket pair (`SCM_RIGHTS`).
//!
//! A process that is not allowed to enter a network namespace (an unprivileged one, whose
//! namespace belongs to a child user namespace: `setns(2)` needs `CAP_SYS_ADMIN` in both) can
//! still use a TAP device made there: a helper inside the namespace opens it and sends the
//! descriptor back, as slirp4netns and rootlesskit do.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Most descriptors one message carries (and [`recv_fds`] accepts).
pub const MAX_PASSED_FDS: usize = 16;

/// A connected pair of `AF_UNIX` `SOCK_SEQPACKET` sockets, close-on-exec (a child inherits one
/// only through an explicit `dup2`, as Node's `spawn` stdio does).
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair(2) writes.
    let ret = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair just returned these two descriptors and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn cmsg_space(count: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((count * std::mem::size_of::<libc::c_int>()) as libc::c_uint) as usize }
}

/// Sends `payload` (at least one byte) with `fds` attached in one message.
pub fn send_fds(socket: BorrowedFd<'_>, fds: &[BorrowedFd<'_>], payload: &[u8]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_PASSED_FDS || payload.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // u64 storage keeps the control buffer aligned for `cmsghdr`.
    let mut control = vec![0u64; cmsg_space(MAX_PASSED_FDS).div_ceil(8)];
    let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(fds.len()) as _;
    // SAFETY: `msg` points at a control buffer of at least `msg_controllen` bytes, so
    // CMSG_FIRSTHDR returns a valid header inside it, and CMSG_DATA has room for `fds.len()`
    // descriptors (CMSG_SPACE above); the buffers outlive the sendmsg call, which only reads.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len =
            libc::CMSG_LEN((fds.len() * std::mem::size_of::<libc::c_int>()) as libc::c_uint) as _;
        let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
        for (i, fd) in fds.iter().enumerate() {
            data.add(i).write_unaligned(fd.as_raw_fd());
        }
        if libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What [`recv_fds`] found.
#[derive(Debug)]
pub enum Received {
    /// A message: its payload and the descriptors attached to it (close-on-exec).
    Message(Vec<u8>, Vec<OwnedFd>),
    /// Nothing yet (non-blocking receive).
    Empty,
    /// The peer closed its end.
    Closed,
}

/// Receives one message without blocking. Descriptors beyond [`MAX_PASSED_FDS`] are closed by
/// the kernel (`MSG_CTRUNC`), and so are those of a message whose payload was cut.
pub fn recv_fds(socket: BorrowedFd<'_>) -> io::Result<Received> {
    let mut payload = vec![0u8; 4096];
    let mut control = vec![0u64; cmsg_space(MAX_PASSED_FDS).div_ceil(8)];
    let mut iov = libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (control.len() * 8) as _;
    // SAFETY: the header points at buffers that outlive the call and are as long as it says.
    let n =
        unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock { Ok(Received::Empty) } else { Err(e) };
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_controllen` bytes of well-formed control messages;
    // CMSG_FIRSTHDR/CMSG_NXTHDR walk them within that length, and each SCM_RIGHTS payload holds
    // (cmsg_len - CMSG_LEN(0)) / sizeof(int) descriptors that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<libc::c_int>();
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "message or its descriptors truncated"));
    }
    payload.truncate(n as usize);
    Ok(Received::Message(payload, fds))
}

/// The name of the TAP interface `fd` is attached to (`TUNGETIFF`); an error if it is not a
/// TUN/TAP descriptor, or a TUN one.
pub(crate) fn tap_name(fd: BorrowedFd<'_>) -> io::Result<String> {
    // SAFETY: `ifreq` is plain old data, valid all-zero.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one `struct ifreq`, which `ifr` is, for the duration of the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut ifr as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags } as libc::c_int;
    if flags & libc::IFF_TAP == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a TUN descriptor, not a TAP one"));
    }
    let bytes: Vec<u8> = ifr.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a live descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_cross_a_socket_pair_with_their_payload() {
        let (a, b) = socket_pair().unwrap();
        assert!(matches!(recv_fds(b.as_fd()).unwrap(), Received::Empty));
        let (x, y) = socket_pair().unwrap();
        send_fds(a.as_fd(), &[x.as_fd(), y.as_fd()], b"tap0 tap1").unwrap();
        let Received::Message(payload, fds) = recv_fds(b.as_fd()).unwrap() else { panic!("no message") };
        assert_eq!(payload, b"tap0 tap1");
        assert_eq!(fds.len(), 2);
        // The received descriptor is the same socket: what goes into x's peer comes out of it.
        sys::write(y.as_fd(), b"ping").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(sys::read(fds[0].as_fd(), &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ping");
        assert!(send_fds(a.as_fd(), &[], b"x").is_err());
        drop(a);
        assert!(matches!(recv_fds(b.as_fd()).unwrap(), Received::Closed));
    }

    #[test]
    fn a_socket_is_not_a_tap() {
        let (a, _b) = socket_pair().unwrap();
        assert!(tap_name(a.as_fd()).is_err());
    }
}
