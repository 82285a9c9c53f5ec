//! Stable error codes shared with TypeScript: a failing call returns `-(index + 1)` into the
//! table that [`error_codes`] hands out once.

use morgana_net::fragment::ipv6::Ipv6FragmentError;
use morgana_net::fragment::FragmentError;
use morgana_net::wire::ipv4::{EmitError, Ipv4Error};
use morgana_net::wire::ipv6::{Ipv6EmitError, Ipv6Error};
use morgana_random::entropy::NoStrongEntropy;
use morgana_random::RngError;
use napi_derive::napi;
use std::sync::OnceLock;

/// One error a binding may report.
#[napi(object)]
pub struct ErrorInfo {
    /// Stable code, e.g. `ERR_IPV4_TRUNCATED`.
    pub code: String,
    /// What went wrong, in words.
    pub message: String,
}

fn table() -> &'static [(&'static str, String)] {
    static TABLE: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rows = Vec::new();
        for e in [
            Ipv4Error::Truncated,
            Ipv4Error::BadVersion,
            Ipv4Error::BadIhl,
            Ipv4Error::BadTotalLength,
            Ipv4Error::BadChecksum,
            Ipv4Error::BadOptions,
        ] {
            rows.push((e.code(), e.to_string()));
        }
        for e in [
            EmitError::OptionsTooLong,
            EmitError::PacketTooLong,
            EmitError::BadFragmentOffset,
            EmitError::BufferTooSmall,
        ] {
            rows.push((e.code(), e.to_string()));
        }
        for e in [
            FragmentError::FragmentationNeeded { mtu: 0 },
            FragmentError::MtuTooSmall { mtu: 0 },
            FragmentError::OffsetOverflow,
        ] {
            // The MTU is filled in by TypeScript, which knows it.
            rows.push((e.code(), e.to_string().replace(" (0)", "").replace("MTU 0 ", "the MTU ")));
        }
        for e in [
            Ipv6Error::Truncated,
            Ipv6Error::BadVersion,
            Ipv6Error::BadExtension { pointer: 0 },
            Ipv6Error::MisplacedHopByHop { pointer: 0 },
            Ipv6Error::TooManyExtensions { pointer: 0 },
        ] {
            rows.push((e.code(), e.to_string()));
        }
        // ERR_BUFFER_TOO_SMALL is already in the table (from the IPv4 emitter).
        for e in
            [Ipv6EmitError::PayloadTooLong, Ipv6EmitError::BadFlowLabel, Ipv6EmitError::BadFragmentOffset]
        {
            rows.push((e.code(), e.to_string()));
        }
        rows.push(("ERR_IPV6_BAD_ADDRESS_LENGTH", "an IPv6 address must be 16 bytes".to_owned()));
        // ERR_MTU_TOO_SMALL is already in the table (from IPv4 fragmentation); the MTU is
        // filled in by TypeScript.
        for e in [Ipv6FragmentError::AlreadyFragment, Ipv6FragmentError::HeaderChainTooLong { mtu: 0 }] {
            rows.push((e.code(), e.to_string().replace("MTU 0 ", "the MTU ")));
        }
        for e in [RngError::Unseeded, RngError::RequestTooLarge] {
            rows.push((e.code(), e.to_string()));
        }
        rows.push((
            RngError::BadEventLength.code(),
            "invalid random event: pool must be 0 to 31, data 1 to 32 bytes in book mode".to_owned(),
        ));
        rows.push(("ERR_RNG_NO_ENTROPY", NoStrongEntropy.to_string()));
        rows
    })
}

/// The error table, indexed by `-(result + 1)` of a failing call.
#[napi]
pub fn error_codes() -> Vec<ErrorInfo> {
    table()
        .iter()
        .map(|(code, message)| ErrorInfo { code: (*code).to_owned(), message: message.clone() })
        .collect()
}

/// The negative result that reports `code`.
pub fn failure(code: &str) -> i32 {
    let index = table().iter().position(|(c, _)| *c == code);
    debug_assert!(index.is_some(), "error code {code} missing from the table");
    -(index.unwrap_or(0) as i32) - 1
}
