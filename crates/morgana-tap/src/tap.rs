//! Opening a TAP interface and writing frames to it.

use crate::error::{classify_device_error, TapError, TapErrorKind};
use crate::reader::{Batch, Delivery, Reader, ReaderConfig};
use crate::sys;
use crate::writer::{Writer, WriterConfig};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// Where and how to open a TAP interface.
#[derive(Clone, Debug, Default)]
pub struct TapOptions<'a> {
    /// Interface name (at most 15 bytes; `%d` lets the kernel pick a number, e.g. `tap%d`).
    /// Opening an existing persistent TAP attaches to it.
    pub name: &'a str,
    /// Network namespace to create the interface in: a name under `/var/run/netns/` (as
    /// `ip netns add` creates) or an absolute path such as `/proc/<pid>/ns/net`. `None`: the
    /// namespace of the calling thread.
    pub netns: Option<&'a str>,
    /// MTU to set on the kernel side of the interface (`SIOCSIFMTU`); `None` leaves it alone.
    pub mtu: Option<u32>,
    /// Ask for a `virtio_net_hdr` ([`VNET_HDR_LEN`] bytes) in front of every frame read and
    /// written, with checksum and TCP segmentation offloads (`TUN_F_CSUM | TUN_F_TSO4 |
    /// TUN_F_TSO6`). A kernel that refuses any of it leaves the interface without the header
    /// (or without some offloads); [`Tap::vnet_hdr`] and [`Tap::offloads`] say what is in effect.
    pub vnet_hdr: bool,
}

/// Length of the `virtio_net_hdr` (the `_v1` layout with `num_buffers`) in front of each frame
/// when [`Tap::vnet_hdr`] is on.
pub const VNET_HDR_LEN: usize = 12;

/// The offloads asked for with the header: partial checksums, TSO for IPv4 and IPv6.
pub const WANTED_OFFLOADS: u32 = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

/// What the descriptor was opened with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Framing {
    vnet_hdr: bool,
    offloads: u32,
}

/// An open TAP interface. Dropping it (and any [`Reader`] and [`Writer`]) closes the
/// descriptor; a non-persistent interface then disappears.
#[derive(Debug)]
pub struct Tap {
    fd: Arc<OwnedFd>,
    name: String,
    framing: Framing,
}

impl Tap {
    /// Opens (creating if needed) the TAP interface described by `options`.
    pub fn open(options: &TapOptions<'_>) -> Result<Tap, TapError> {
        check_name(options.name)?;
        let (fd, name, framing) = match options.netns {
            None => open_here(options.name, options.mtu, options.vnet_hdr)?,
            Some(netns) => {
                let path = netns_path(netns)?;
                let name = options.name.to_owned();
                let mtu = options.mtu;
                let vnet_hdr = options.vnet_hdr;
                // setns() changes only the calling thread's namespace, so a throw-away thread
                // enters the namespace, opens the device there and hands the descriptor back.
                std::thread::Builder::new()
                    .name("morgana-tap-open".into())
                    .spawn(move || {
                        let ns = sys::open(&path, libc::O_RDONLY).map_err(|e| {
                            let kind = match e.raw_os_error() {
                                Some(libc::EACCES | libc::EPERM) => TapErrorKind::Permission,
                                _ => TapErrorKind::Netns,
                            };
                            TapError::new(kind, format!("network namespace {path}"), Some(e))
                        })?;
                        sys::setns_net(ns.as_fd()).map_err(|e| {
                            let kind = match e.raw_os_error() {
                                Some(libc::EPERM | libc::EACCES) => TapErrorKind::Permission,
                                _ => TapErrorKind::Netns,
                            };
                            TapError::new(kind, format!("setns {path}"), Some(e))
                        })?;
                        open_here(&name, mtu, vnet_hdr)
                    })
                    .map_err(|e| TapError::new(TapErrorKind::Open, "spawn thread", Some(e)))?
                    .join()
                    .map_err(|_| TapError::new(TapErrorKind::Open, "open thread panicked", None))??
            }
        };
        Ok(Tap { fd: Arc::new(fd), name, framing })
    }

    /// Adopts an open TAP descriptor (one received from a helper inside another network
    /// namespace, see [`crate::fdpass`]): checks it is a TAP (`TUNGETIFF`), learns its name and
    /// makes it non-blocking. The MTU is left as it is. A descriptor attached with
    /// `IFF_VNET_HDR` (the helper opened it with [`TapOptions::vnet_hdr`]) keeps its header: its
    /// size is set to [`VNET_HDR_LEN`] again and the offloads asked for again, widest first, so
    /// that [`Tap::vnet_hdr`] and [`Tap::offloads`] say what is in effect (the kernel has no
    /// getter for them).
    pub fn adopt(fd: OwnedFd) -> Result<Tap, TapError> {
        let name = crate::fdpass::tap_name(fd.as_fd())
            .map_err(|e| TapError::new(TapErrorKind::Open, "adopt: not a TAP descriptor", Some(e)))?;
        crate::fdpass::set_nonblocking(fd.as_fd())
            .map_err(|e| TapError::new(TapErrorKind::Open, "adopt: O_NONBLOCK", Some(e)))?;
        let flags = sys::tun_get_flags(fd.as_fd()).map_err(|e| classify_device_error(e, "TUNGETIFF"))?;
        let framing = if flags & libc::IFF_VNET_HDR != 0 {
            sys::tun_set_vnet_hdr_size(fd.as_fd(), VNET_HDR_LEN as libc::c_int)
                .map_err(|e| classify_device_error(e, "TUNSETVNETHDRSZ"))?;
            Framing { vnet_hdr: true, offloads: set_widest_offloads(fd.as_fd()) }
        } else {
            Framing::default()
        };
        Ok(Tap { fd: Arc::new(fd), name, framing })
    }

    /// The interface name the kernel assigned.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether every frame read and written carries a [`VNET_HDR_LEN`]-byte `virtio_net_hdr`
    /// in front (asked for with [`TapOptions::vnet_hdr`] and granted by the kernel).
    pub fn vnet_hdr(&self) -> bool {
        self.framing.vnet_hdr
    }

    /// The `TUN_F_*` offloads in effect (0 without the header): with `TUN_F_CSUM` the kernel may
    /// hand over frames whose checksum is left to the reader (`VIRTIO_NET_HDR_F_NEEDS_CSUM`),
    /// with `TUN_F_TSO4`/`TUN_F_TSO6` coalesced TCP frames of up to 64 KiB.
    pub fn offloads(&self) -> u32 {
        self.framing.offloads
    }

    /// Writes one frame on the calling thread. A full device queue gives an error of kind
    /// [`io::ErrorKind::WouldBlock`]; the frame is then not sent. The kernel processes the
    /// frame (its whole receive path) before this returns; [`Tap::spawn_writer`] moves that
    /// work to a thread of its own.
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        sys::write(self.fd.as_fd(), frame)
    }

    /// Starts the writer thread: frames queued on the returned [`Writer`] (a bounded ring,
    /// `config`) are written to the device in order, one `write(2)` each, off the caller's
    /// thread.
    pub fn spawn_writer(&self, config: WriterConfig) -> io::Result<Writer> {
        Writer::spawn(self.fd.clone(), config)
    }

    /// Starts the reader thread, which calls `deliver` once per wake-up with every frame that
    /// was ready (up to the caps in `config`). `deliver` returns whether the batch was taken;
    /// frames of a refused batch are counted as dropped.
    pub fn spawn_reader<F>(&self, config: ReaderConfig, deliver: F) -> io::Result<Reader>
    where
        F: FnMut(Batch) -> Delivery + Send + 'static,
    {
        Reader::spawn(self.fd.clone(), config, deliver)
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn check_name(name: &str) -> Result<(), TapError> {
    let bad = name.is_empty()
        || name.len() >= sys::IFNAMSIZ
        || name == "."
        || name == ".."
        || name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad {
        return Err(TapError::new(
            TapErrorKind::Open,
            format!("invalid interface name {name:?} (1 to 15 bytes, no '/', ':' or whitespace)"),
            None,
        ));
    }
    Ok(())
}

fn netns_path(netns: &str) -> Result<String, TapError> {
    if netns.starts_with('/') {
        return Ok(netns.to_owned());
    }
    if netns.is_empty() || netns == "." || netns == ".." || netns.contains('/') || netns.contains('\0') {
        return Err(TapError::new(
            TapErrorKind::Netns,
            format!("invalid network namespace name {netns:?}"),
            None,
        ));
    }
    Ok(format!("/var/run/netns/{netns}"))
}

/// Opens the device in the calling thread's network namespace; with `vnet_hdr`, asks for the
/// header and offloads and falls back to a plain TAP when the kernel refuses the header.
fn open_here(name: &str, mtu: Option<u32>, vnet_hdr: bool) -> Result<(OwnedFd, String, Framing), TapError> {
    let plain = libc::IFF_TAP | libc::IFF_NO_PI;
    let (fd, name, framing) = if vnet_hdr {
        match open_vnet(name) {
            Ok(opened) => opened,
            // The kernel refused the header (or sizing it): open the interface as before.
            Err(_) => {
                let (fd, name) = open_flags(name, plain)?;
                (fd, name, Framing::default())
            }
        }
    } else {
        let (fd, name) = open_flags(name, plain)?;
        (fd, name, Framing::default())
    };
    if let Some(mtu) = mtu {
        sys::set_mtu(&name, mtu)
            .map_err(|e| classify_device_error(e, &format!("set MTU {mtu} on {name}")))?;
    }
    Ok((fd, name, framing))
}

/// `/dev/net/tun` attached to `name` with `flags`.
fn open_flags(name: &str, flags: libc::c_int) -> Result<(OwnedFd, String), TapError> {
    let fd = sys::open("/dev/net/tun", libc::O_RDWR | libc::O_NONBLOCK)
        .map_err(|e| classify_device_error(e, "open /dev/net/tun"))?;
    let name = sys::tun_set_iff(fd.as_fd(), name, flags)
        .map_err(|e| classify_device_error(e, &format!("TUNSETIFF {name}")))?;
    Ok((fd, name))
}

/// Opens with `IFF_VNET_HDR`, checks the kernel kept the flag (`TUNGETIFF`), sizes the header
/// and asks for the offloads, the widest set first.
fn open_vnet(name: &str) -> Result<(OwnedFd, String, Framing), TapError> {
    let (fd, name) = open_flags(name, libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR)?;
    let flags = sys::tun_get_flags(fd.as_fd()).map_err(|e| classify_device_error(e, "TUNGETIFF"))?;
    if flags & libc::IFF_VNET_HDR == 0 {
        return Err(TapError::new(TapErrorKind::Open, "the kernel dropped IFF_VNET_HDR", None));
    }
    sys::tun_set_vnet_hdr_size(fd.as_fd(), VNET_HDR_LEN as libc::c_int)
        .map_err(|e| classify_device_error(e, "TUNSETVNETHDRSZ"))?;
    let offloads = set_widest_offloads(fd.as_fd());
    Ok((fd, name, Framing { vnet_hdr: true, offloads }))
}

/// Asks for the widest set of offloads the kernel grants (`TUNSETOFFLOAD`) and returns it.
fn set_widest_offloads(fd: std::os::fd::BorrowedFd<'_>) -> u32 {
    [WANTED_OFFLOADS, libc::TUN_F_CSUM, 0]
        .into_iter()
        .find(|&o| sys::tun_set_offload(fd, o).is_ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_syscall() {
        for bad in ["", "a-name-that-is-too-long", "a/b", "a:b", "a b", ".", ".."] {
            let e = Tap::open(&TapOptions { name: bad, ..Default::default() }).unwrap_err();
            assert_eq!(e.code(), "ERR_TAP_OPEN", "{bad:?}");
        }
    }

    #[test]
    fn netns_names_and_paths() {
        assert_eq!(netns_path("blue").unwrap(), "/var/run/netns/blue");
        assert_eq!(netns_path("/proc/1/ns/net").unwrap(), "/proc/1/ns/net");
        assert_eq!(netns_path("a/b").unwrap_err().code(), "ERR_TAP_NETNS");
        assert_eq!(netns_path("..").unwrap_err().code(), "ERR_TAP_NETNS");
    }

    #[test]
    fn a_missing_namespace_is_reported_as_such() {
        let e = Tap::open(&TapOptions {
            name: "mtap0",
            netns: Some("morgana-no-such-namespace"),
            ..Default::default()
        })
        .unwrap_err();
        // Unprivileged runs may be refused before the lookup; both are clear answers.
        assert!(matches!(e.kind(), TapErrorKind::Netns | TapErrorKind::Permission), "{e}");
    }
}
