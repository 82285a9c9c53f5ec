//! Why opening a TAP device failed, sorted into the cases a caller can act on.

use std::fmt;
use std::io;

/// The class of an open failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapErrorKind {
    /// Not allowed: `/dev/net/tun` not accessible, no `CAP_NET_ADMIN`, or `setns` refused.
    Permission,
    /// The kernel offers no TUN/TAP driver (no `/dev/net/tun`).
    Unavailable,
    /// The named network namespace does not exist or is not a network namespace.
    Netns,
    /// Anything else (invalid or busy name, MTU refused, …).
    Open,
}

/// An open failure with the OS error behind it.
#[derive(Debug)]
pub struct TapError {
    kind: TapErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl TapError {
    pub(crate) fn new(kind: TapErrorKind, message: impl Into<String>, source: Option<io::Error>) -> Self {
        TapError { kind, message: message.into(), source }
    }

    /// What went wrong, by class.
    pub fn kind(&self) -> TapErrorKind {
        self.kind
    }

    /// The stable code Morgana reports for this class (`ERR_TAP_PERMISSION`, …).
    pub fn code(&self) -> &'static str {
        match self.kind {
            TapErrorKind::Permission => "ERR_TAP_PERMISSION",
            TapErrorKind::Unavailable => "ERR_TAP_UNAVAILABLE",
            TapErrorKind::Netns => "ERR_TAP_NETNS",
            TapErrorKind::Open => "ERR_TAP_OPEN",
        }
    }

    /// The errno behind the failure, when there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.as_ref().and_then(io::Error::raw_os_error)
    }
}

impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Classifies an errno from opening `/dev/net/tun` or `TUNSETIFF`.
pub(crate) fn classify_device_error(err: io::Error, what: &str) -> TapError {
    let kind = match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => TapErrorKind::Permission,
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) if what.contains("/dev/net/tun") => {
            TapErrorKind::Unavailable
        }
        _ => TapErrorKind::Open,
    };
    TapError::new(kind, what, Some(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classes() {
        let e = classify_device_error(io::Error::from_raw_os_error(libc::EACCES), "open /dev/net/tun");
        assert_eq!(e.code(), "ERR_TAP_PERMISSION");
        assert_eq!(e.errno(), Some(libc::EACCES));
        let e = classify_device_error(io::Error::from_raw_os_error(libc::ENOENT), "open /dev/net/tun");
        assert_eq!(e.kind(), TapErrorKind::Unavailable);
        let e = classify_device_error(io::Error::from_raw_os_error(libc::EBUSY), "TUNSETIFF tap0");
        assert_eq!(e.code(), "ERR_TAP_OPEN");
        assert!(e.to_string().starts_with("TUNSETIFF tap0: "), "{e}");
    }
}
