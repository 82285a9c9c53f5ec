//! The retransmission timeout estimator of RFC 6298: SRTT and RTTVAR from samples, RTO =
//! SRTT + max(G, 4·RTTVAR) clamped to [min, max], doubled on every expiry (backoff).

/// RTO state of one connection, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    srtt: Option<f64>,
    rttvar: f64,
    rto: u64,
    min: u64,
    max: u64,
    /// Backoff exponent from consecutive expiries.
    backoff: u32,
}

/// Clock granularity G (ms) in RTO = SRTT + max(G, 4·RTTVAR).
const GRANULARITY_MS: f64 = 1.0;

impl RttEstimator {
    /// A new estimator: RTO starts at `initial` (RFC 6298: 1 s).
    pub fn new(initial: u64, min: u64, max: u64) -> Self {
        RttEstimator { srtt: None, rttvar: 0.0, rto: initial.clamp(min, max), min, max, backoff: 0 }
    }

    /// Takes a round-trip sample (never one from a retransmitted segment: Karn).
    pub fn sample(&mut self, rtt_ms: u64) {
        let r = rtt_ms as f64;
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2.0;
            }
            Some(srtt) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (srtt - r).abs();
                self.srtt = Some(0.875 * srtt + 0.125 * r);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = ((srtt + (4.0 * self.rttvar).max(GRANULARITY_MS)).ceil() as u64).clamp(self.min, self.max);
        self.backoff = 0;
    }

    /// The current timeout, backoff included.
    pub fn rto(&self) -> u64 {
        self.rto.saturating_mul(1u64 << self.backoff.min(16)).min(self.max)
    }

    /// Doubles the timeout after an expiry (RFC 6298 §5.5).
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Clears the backoff (an ACK for new data arrived).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// Smoothed RTT, if measured.
    pub fn srtt(&self) -> Option<f64> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298() {
        let mut e = RttEstimator::new(1000, 200, 60_000);
        assert_eq!(e.rto(), 1000);
        e.sample(100);
        // SRTT 100, RTTVAR 50 → 300.
        assert_eq!(e.rto(), 300);
        e.sample(10);
        for _ in 0..50 {
            e.sample(10);
        }
        assert_eq!(e.rto(), 200, "clamped to the minimum");
        e.back_off();
        e.back_off();
        assert_eq!(e.rto(), 800);
        for _ in 0..20 {
            e.back_off();
        }
        assert_eq!(e.rto(), 60_000);
    }
}
