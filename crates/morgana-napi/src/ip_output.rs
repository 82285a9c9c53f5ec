//! Binding of the IP send path's Rust state ([`morgana_net::ip_out`]): one `NativeIpOutput`
//! per stack, created and owned by the TypeScript IPv4 layer (shared with IPv6). It holds the
//! IPv4 identification counter every packet of the stack takes, and the neighbour entries the
//! IP layers install for established flows, so the TCP engine's output can leave as whole
//! Ethernet frames without a per-packet trip through TypeScript.

use morgana_net::ip_out::{IpOutput, Neighbour};
use napi_derive::napi;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IP send path's state of one stack.
#[napi]
pub struct NativeIpOutput {
    pub(crate) inner: IpOutput,
}

fn entry(
    iface: u32,
    macs: &[u8],
    mtu: u32,
    expires_at: f64,
    tso_max: Option<u32>,
    partial_checksum: Option<bool>,
) -> Option<Neighbour> {
    let dst_mac: [u8; 6] = macs.get(0..6)?.try_into().ok()?;
    let src_mac: [u8; 6] = macs.get(6..12)?.try_into().ok()?;
    let expires_at = if expires_at.is_finite() && expires_at > 0.0 { expires_at as u64 } else { 0 };
    let tso_max = tso_max.unwrap_or(0) as usize;
    let partial_checksum = partial_checksum.unwrap_or(false);
    Some(Neighbour { iface, dst_mac, src_mac, mtu: mtu as usize, expires_at, tso_max, partial_checksum })
}

#[napi]
impl NativeIpOutput {
    /// A send path: the identification counter starts after `identification` (random).
    #[napi(constructor)]
    pub fn new(identification: u32, ttl: u32, hop_limit: u32) -> Self {
        NativeIpOutput {
            inner: IpOutput::new(identification as u16, ttl.min(255) as u8, hop_limit.min(255) as u8),
        }
    }

    /// The next IPv4 identification.
    #[napi]
    pub fn next_identification(&mut self) -> u32 {
        u32::from(self.inner.next_identification())
    }

    /// Reserves `n` consecutive IPv4 identifications for packets built in TypeScript: returns
    /// the first (they wrap at 2^16); packets built here continue after them.
    #[napi]
    pub fn reserve_identifications(&mut self, n: u32) -> u32 {
        let first = self.inner.next_identification();
        self.inner.skip_identifications((n.max(1) - 1) as usize);
        u32::from(first)
    }

    /// Sets the IPv6 hop limit (router advertisements may change it).
    #[napi]
    pub fn set_hop_limit(&mut self, hop_limit: u32) {
        self.inner.hop_limit = hop_limit.min(255) as u8;
    }

    /// Installs the entry for IPv4 `dst`: `macs` is the next hop's MAC then ours (12 bytes);
    /// used until `expires_at` (ms); `tso_max` > 0: the interface takes TCP super-frames of IP
    /// packets up to that size; `partial_checksum`: it takes TCP frames whose checksum is left
    /// partial (`NEEDS_CSUM`), so the TCP engine writes only the pseudo-header sum. False when
    /// `macs` is short.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn set_neighbour4(
        &mut self,
        dst: u32,
        iface: u32,
        macs: &[u8],
        mtu: u32,
        expires_at: f64,
        tso_max: Option<u32>,
        partial_checksum: Option<bool>,
    ) -> bool {
        let Some(n) = entry(iface, macs, mtu, expires_at, tso_max, partial_checksum) else { return false };
        self.inner.set_neighbour(IpAddr::V4(Ipv4Addr::from(dst)), n);
        true
    }

    /// Installs the entry for IPv6 `dst` (16 bytes); as `set_neighbour4`.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn set_neighbour6(
        &mut self,
        dst: &[u8],
        iface: u32,
        macs: &[u8],
        mtu: u32,
        expires_at: f64,
        tso_max: Option<u32>,
        partial_checksum: Option<bool>,
    ) -> bool {
        let Ok(octets) = <[u8; 16]>::try_from(dst) else { return false };
        let Some(n) = entry(iface, macs, mtu, expires_at, tso_max, partial_checksum) else { return false };
        self.inner.set_neighbour(IpAddr::V6(Ipv6Addr::from(octets)), n);
        true
    }

    /// Withdraws every entry (an address, route or neighbour changed).
    #[napi]
    pub fn clear(&mut self) {
        self.inner.clear();
    }

    /// Entries installed.
    #[napi]
    pub fn neighbours(&self) -> u32 {
        self.inner.neighbours() as u32
    }

    /// `[IPv4 packets, IPv6 packets]` whose headers were written in Rust.
    #[napi]
    pub fn sent(&self) -> Vec<f64> {
        let s = self.inner.stats();
        vec![s.sent_v4 as f64, s.sent_v6 as f64]
    }
}
