//! Congestion control: the [`CongestionControl`] trait and its two implementations, NewReno
//! (RFC 5681, RFC 6582) and CUBIC (RFC 9438).
//!
//! The split follows Linux's `tcp_congestion_ops`: a controller owns cwnd and ssthresh and
//! decides how they grow on ACKs and how far they fall on a congestion event or a timeout; the
//! connection ([`crate::conn`]) owns loss detection and the recovery mechanics (RFC 6675 pipe,
//! NewReno's window inflation and deflation, which it applies through
//! [`CongestionControl::set_cwnd`]).
//!
//! Both share slow start with byte counting as Linux does it: cwnd grows by every byte an ACK
//! newly acknowledges, up to ssthresh, and the rest goes to congestion avoidance. RFC 5681's
//! "at most one SMSS per ACK" (and RFC 3465's L = 2) would make a stretch ACK — one ACK for the
//! many segments a batch delivered, which both Linux with GRO and Morgana's batched receive
//! produce — grow the window by a single segment, and slow start would take many more round
//! trips than the doubling it is meant to be. Congestion avoidance counts bytes too (RFC 3465
//! §2.1), for the same reason. Neither grows the window while the sender does not use it
//! (RFC 7661's idea, as Linux's `tcp_is_cwnd_limited`): an application- or receiver-limited
//! connection would otherwise inflate cwnd to values it never tested.

/// The congestion control algorithms the engine implements.
///
/// CUBIC is the default, as in Linux, Windows and macOS: on the short round trips of a
/// VirtualSwitch or a TAP link it runs in its Reno-friendly region and behaves like NewReno,
/// while on long fat paths it regains its window after a loss in time rather than in round
/// trips, and it backs off by 30 % instead of 50 %. Peers that compare Morgana with the kernel
/// then see the same dynamics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// NewReno (RFC 5681, RFC 6582): halve on loss, one segment per round trip after.
    NewReno,
    /// CUBIC (RFC 9438): β = 0.7, C = 0.4, fast convergence, Reno-friendly region.
    #[default]
    Cubic,
}

impl Algorithm {
    /// The name used by the bindings (`"newreno"`, `"cubic"`), as Linux spells them.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::NewReno => "newreno",
            Algorithm::Cubic => "cubic",
        }
    }

    /// Parses [`Algorithm::name`] (case-insensitive; `"reno"` means NewReno).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "newreno" | "reno" => Some(Algorithm::NewReno),
            "cubic" => Some(Algorithm::Cubic),
            _ => None,
        }
    }
}

/// What an ACK that advanced SND.UNA outside loss recovery tells the controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AckSample {
    /// Current time (ms).
    pub now: u64,
    /// Bytes newly acknowledged.
    pub acked: usize,
    /// Bytes in flight when the ACK arrived (before it removed `acked`).
    pub flight: usize,
    /// Smoothed round-trip time (ms), once measured.
    pub srtt_ms: Option<f64>,
}

/// The window state every controller keeps: cwnd, ssthresh and the segment size, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The congestion window.
    pub cwnd: usize,
    /// The slow-start threshold.
    pub ssthresh: usize,
    /// The sender's maximum segment size.
    pub smss: usize,
}

impl Window {
    /// Before the handshake: cwnd 0, ssthresh unbounded, the RFC 9293 default segment size.
    pub const fn new() -> Self {
        Window { cwnd: 0, ssthresh: usize::MAX / 2, smss: 536 }
    }

    /// Whether the sender used its window (as Linux's `tcp_is_cwnd_limited`): in slow start a
    /// flight of half the window is enough (the window doubles per round trip, so the flight
    /// lags it); in congestion avoidance the flight must fill the window to within a segment.
    pub fn cwnd_limited(&self, flight: usize) -> bool {
        if self.cwnd < self.ssthresh {
            flight * 2 > self.cwnd
        } else {
            flight + self.smss >= self.cwnd
        }
    }

    /// Slow start with byte counting: grows cwnd by `acked` up to ssthresh; returns the bytes
    /// left over for congestion avoidance (all of them once past ssthresh).
    pub fn slow_start(&mut self, acked: usize) -> usize {
        if self.cwnd >= self.ssthresh {
            return acked;
        }
        let grow = acked.min(self.ssthresh - self.cwnd);
        self.cwnd += grow;
        acked - grow
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}

/// A congestion controller. Windows are in bytes; `smss` is the sender's maximum segment size.
///
/// An implementation provides its [`Window`], congestion avoidance and its reactions to loss;
/// the accessors and [`CongestionControl::on_ack`] (the cwnd-limited test and slow start, which
/// every algorithm here shares) come with the trait.
pub trait CongestionControl {
    /// Which algorithm this is.
    fn algorithm(&self) -> Algorithm;
    /// cwnd, ssthresh and the segment size.
    fn window(&self) -> &Window;
    /// The same, to change.
    fn window_mut(&mut self) -> &mut Window;
    /// Congestion avoidance: `acked` bytes of `ack` are left after slow start (never 0).
    fn congestion_avoidance(&mut self, ack: &AckSample, acked: usize);
    /// An ACK arrived while the sender did not use its window (no growth; default: nothing).
    fn on_app_limited(&mut self, _ack: &AckSample) {}
    /// A congestion event (fast retransmit, RFC 5681 §3.2 step 2): lower ssthresh and set
    /// cwnd to it. `flight` is FlightSize.
    fn on_congestion(&mut self, now: u64, flight: usize);
    /// The retransmission timer expired: cwnd falls to one segment (RFC 5681 §3.1). `reduce`
    /// is false for a repeated expiry of the same episode, or one during a recovery that
    /// already lowered ssthresh: then ssthresh stays.
    fn on_rto(&mut self, now: u64, flight: usize, reduce: bool);

    /// The congestion window.
    fn cwnd(&self) -> usize {
        self.window().cwnd
    }
    /// The slow-start threshold.
    fn ssthresh(&self) -> usize {
        self.window().ssthresh
    }
    /// Sets cwnd directly (loss recovery's inflation and deflation, done by the connection).
    fn set_cwnd(&mut self, cwnd: usize) {
        self.window_mut().cwnd = cwnd;
    }
    /// The handshake finished: the initial window (RFC 6928) for segments of `smss` bytes.
    fn init(&mut self, smss: usize, initial_window: usize) {
        let w = self.window_mut();
        w.smss = smss;
        w.cwnd = initial_window;
    }
    /// The segment size changed (path-MTU discovery).
    fn set_mss(&mut self, smss: usize) {
        self.window_mut().smss = smss;
    }
    /// An ACK advanced SND.UNA outside recovery: grow the window, by slow start up to
    /// ssthresh and by [`CongestionControl::congestion_avoidance`] beyond, if the sender used it.
    fn on_ack(&mut self, ack: &AckSample) {
        if !self.window().cwnd_limited(ack.flight) {
            self.on_app_limited(ack);
            return;
        }
        let acked = self.window_mut().slow_start(ack.acked);
        if acked > 0 {
            self.congestion_avoidance(ack, acked);
        }
    }
}

/// NewReno (RFC 5681 §3.1, RFC 6582): slow start, then one SMSS per window of bytes
/// acknowledged; ssthresh = max(FlightSize / 2, 2·SMSS) on loss.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReno {
    window: Window,
    /// Bytes acknowledged in congestion avoidance not yet turned into window (RFC 3465 §2.1).
    bytes_acked: usize,
}

impl NewReno {
    /// A controller before the handshake (cwnd 0, ssthresh unbounded).
    pub fn new() -> Self {
        NewReno { window: Window::new(), bytes_acked: 0 }
    }
}

impl Default for NewReno {
    fn default() -> Self {
        Self::new()
    }
}

impl CongestionControl for NewReno {
    fn algorithm(&self) -> Algorithm {
        Algorithm::NewReno
    }

    fn window(&self) -> &Window {
        &self.window
    }

    fn window_mut(&mut self) -> &mut Window {
        &mut self.window
    }

    fn congestion_avoidance(&mut self, _ack: &AckSample, acked: usize) {
        let w = &mut self.window;
        self.bytes_acked += acked;
        if self.bytes_acked >= w.cwnd && w.cwnd > 0 {
            let segments = self.bytes_acked / w.cwnd;
            self.bytes_acked -= segments * w.cwnd;
            w.cwnd += segments * w.smss;
        }
    }

    fn on_congestion(&mut self, _now: u64, flight: usize) {
        let w = &mut self.window;
        w.ssthresh = (flight / 2).max(2 * w.smss);
        w.cwnd = w.ssthresh;
        self.bytes_acked = 0;
    }

    fn on_rto(&mut self, _now: u64, flight: usize, reduce: bool) {
        let w = &mut self.window;
        if reduce {
            w.ssthresh = (flight / 2).max(2 * w.smss);
        }
        w.cwnd = w.smss;
        self.bytes_acked = 0;
    }
}

/// CUBIC's multiplicative decrease factor β (RFC 9438 §4.6).
pub const CUBIC_BETA: f64 = 0.7;
/// CUBIC's aggressiveness C in segments per second cubed (RFC 9438 §4.2).
pub const CUBIC_C: f64 = 0.4;
/// The Reno-friendly additive increase α = 3(1 − β)/(1 + β) (RFC 9438 §4.3).
pub const CUBIC_ALPHA: f64 = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);

/// RFC 9438 Figure 2: K, the time (s) the cubic takes to climb from `cwnd_epoch` back to
/// `w_max` (both in segments).
pub fn cubic_k(w_max: f64, cwnd_epoch: f64) -> f64 {
    ((w_max - cwnd_epoch) / CUBIC_C).cbrt()
}

/// RFC 9438 Figure 1: W_cubic(t) = C·(t − K)³ + W_max, in segments, `t` in seconds.
pub fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
    CUBIC_C * (t - k).powi(3) + w_max
}

/// The congestion-avoidance epoch of CUBIC (RFC 9438 §4.2): where the current curve starts.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Epoch {
    /// When congestion avoidance started (ms), shifted forward while the sender was idle.
    start: u64,
    /// The plateau of this curve, in segments.
    w_max: f64,
    /// Seconds from `start` to the plateau.
    k: f64,
    /// The Reno-friendly estimate W_est, in segments.
    w_est: f64,
    /// The last ACK seen (ms), to freeze the curve while the sender does not use its window.
    last_ack: u64,
}

/// CUBIC (RFC 9438) with fast convergence and the Reno-friendly region; slow start as
/// NewReno's (HyStart is not implemented: slow start ends at the first loss).
#[derive(Debug, Clone, PartialEq)]
pub struct Cubic {
    window: Window,
    /// W_max of the last congestion event, in segments (0 before the first).
    w_max: f64,
    /// cwnd just before the last reduction, in segments (RFC 9438 cwnd_prior).
    cwnd_prior: f64,
    /// The curve in use, from the first ACK of congestion avoidance.
    epoch: Option<Epoch>,
    /// The last reduction was a timeout: the next curve starts flat at its own cwnd (§4.8).
    after_rto: bool,
    /// Fractional window growth not yet applied, in bytes.
    carry: f64,
}

impl Cubic {
    /// A controller before the handshake (cwnd 0, ssthresh unbounded).
    pub fn new() -> Self {
        Cubic {
            window: Window::new(),
            w_max: 0.0,
            cwnd_prior: 0.0,
            epoch: None,
            after_rto: false,
            carry: 0.0,
        }
    }

    /// W_max of the last congestion event, in segments.
    pub fn w_max(&self) -> f64 {
        self.w_max
    }

    /// K of the current epoch in seconds, once congestion avoidance started.
    pub fn k(&self) -> Option<f64> {
        self.epoch.map(|e| e.k)
    }

    /// Lowers W_max (with fast convergence, §4.7), ssthresh and the remembered cwnd for a
    /// congestion event at the current window.
    fn reduce(&mut self) {
        let w = &mut self.window;
        let cwnd = w.cwnd as f64 / w.smss as f64;
        self.w_max = if cwnd < self.w_max { cwnd * (1.0 + CUBIC_BETA) / 2.0 } else { cwnd };
        self.cwnd_prior = cwnd;
        // β = 7/10 in integers, so a window of whole segments stays whole.
        w.ssthresh = (w.cwnd.saturating_mul(7) / 10).max(2 * w.smss);
        self.epoch = None;
        self.carry = 0.0;
    }
}

impl Default for Cubic {
    fn default() -> Self {
        Self::new()
    }
}

impl CongestionControl for Cubic {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Cubic
    }

    fn window(&self) -> &Window {
        &self.window
    }

    fn window_mut(&mut self) -> &mut Window {
        &mut self.window
    }

    fn congestion_avoidance(&mut self, ack: &AckSample, acked: usize) {
        let smss = self.window.smss as f64;
        let cwnd = self.window.cwnd as f64 / smss;
        let epoch = self.epoch.get_or_insert_with(|| {
            // A new curve starts at the current window (RFC 9438 §4.2, §4.8).
            let (w_max, k) = if self.after_rto || self.w_max <= cwnd {
                (cwnd, 0.0)
            } else {
                (self.w_max, cubic_k(self.w_max, cwnd))
            };
            Epoch { start: ack.now, w_max, k, w_est: cwnd, last_ack: ack.now }
        });
        self.after_rto = false;
        epoch.last_ack = ack.now;
        let t = ack.now.saturating_sub(epoch.start) as f64 / 1000.0;
        let rtt = ack.srtt_ms.unwrap_or(0.0) / 1000.0;
        let segments = acked as f64 / smss;
        // §4.3: the Reno-friendly estimate, α until it passes the window before the reduction.
        let alpha = if epoch.w_est >= self.cwnd_prior { 1.0 } else { CUBIC_ALPHA };
        epoch.w_est += alpha * segments / cwnd;
        let next = if w_cubic(t, epoch.k, epoch.w_max) < epoch.w_est {
            // §4.3: Reno-friendly region.
            epoch.w_est.max(cwnd)
        } else {
            // §4.4, §4.5: towards W_cubic(t + RTT), at most 1.5·cwnd, per acknowledged segment.
            let target = w_cubic(t + rtt, epoch.k, epoch.w_max).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * segments
        };
        let grow = (next - cwnd) * smss + self.carry;
        let whole = grow.floor().max(0.0);
        self.carry = grow - whole;
        self.window.cwnd += whole as usize;
    }

    fn on_app_limited(&mut self, ack: &AckSample) {
        // Application- or receiver-limited: freeze the curve (its clock does not run).
        if let Some(e) = self.epoch.as_mut() {
            e.start += ack.now.saturating_sub(e.last_ack);
            e.last_ack = ack.now;
        }
    }

    fn on_congestion(&mut self, _now: u64, _flight: usize) {
        // §4.6: ssthresh = cwnd·β (cwnd, not FlightSize, as Linux: an application-limited
        // flight would otherwise collapse the window).
        self.reduce();
        self.after_rto = false;
        self.window.cwnd = self.window.ssthresh;
    }

    fn on_rto(&mut self, _now: u64, _flight: usize, reduce: bool) {
        // §4.8: ssthresh as for a congestion event, cwnd to one segment as Reno.
        if reduce {
            self.reduce();
        }
        self.epoch = None;
        self.after_rto = true;
        self.window.cwnd = self.window.smss;
    }
}

/// The controller of one connection: one of the implementations, chosen per connection
/// (enum dispatch keeps it inline in the connection, without a heap allocation).
#[derive(Debug, Clone, PartialEq)]
pub enum Controller {
    /// NewReno.
    NewReno(NewReno),
    /// CUBIC.
    Cubic(Cubic),
}

impl Controller {
    /// A fresh controller of `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::NewReno => Controller::NewReno(NewReno::new()),
            Algorithm::Cubic => Controller::Cubic(Cubic::new()),
        }
    }

    /// Switches algorithm mid-connection, keeping cwnd, ssthresh and the segment size.
    pub fn switch(&mut self, algorithm: Algorithm) {
        if self.algorithm() == algorithm {
            return;
        }
        let window = *self.window();
        *self = Controller::new(algorithm);
        *self.window_mut() = window;
    }

    fn inner(&self) -> &dyn CongestionControl {
        match self {
            Controller::NewReno(c) => c,
            Controller::Cubic(c) => c,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn CongestionControl {
        match self {
            Controller::NewReno(c) => c,
            Controller::Cubic(c) => c,
        }
    }
}

impl CongestionControl for Controller {
    fn algorithm(&self) -> Algorithm {
        self.inner().algorithm()
    }
    fn window(&self) -> &Window {
        self.inner().window()
    }
    fn window_mut(&mut self) -> &mut Window {
        self.inner_mut().window_mut()
    }
    fn congestion_avoidance(&mut self, ack: &AckSample, acked: usize) {
        self.inner_mut().congestion_avoidance(ack, acked);
    }
    fn on_app_limited(&mut self, ack: &AckSample) {
        self.inner_mut().on_app_limited(ack);
    }
    fn on_ack(&mut self, ack: &AckSample) {
        // One dispatch for the whole ACK rather than one per step.
        self.inner_mut().on_ack(ack);
    }
    fn on_congestion(&mut self, now: u64, flight: usize) {
        self.inner_mut().on_congestion(now, flight);
    }
    fn on_rto(&mut self, now: u64, flight: usize, reduce: bool) {
        self.inner_mut().on_rto(now, flight, reduce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    /// Feeds `cc` one ACK per `MSS` for `rounds` round trips of `rtt` ms, the sender always
    /// filling the window; returns (time, cwnd in segments) after each round.
    fn drive(cc: &mut dyn CongestionControl, start: u64, rtt: u64, rounds: usize) -> Vec<(u64, f64)> {
        let mut now = start;
        let mut trace = Vec::new();
        for _ in 0..rounds {
            let acks = cc.cwnd() / MSS;
            for i in 0..acks {
                // ACKs spread over the round trip; the sender refills the window on each.
                let at = now + rtt * (i as u64 + 1) / acks as u64;
                let flight = cc.cwnd();
                cc.on_ack(&AckSample { now: at, acked: MSS, flight, srtt_ms: Some(rtt as f64) });
            }
            now += rtt;
            trace.push((now, cc.cwnd() as f64 / MSS as f64));
        }
        trace
    }

    #[test]
    fn slow_start_doubles_per_round_trip_even_with_stretch_acks() {
        for alg in [Algorithm::NewReno, Algorithm::Cubic] {
            let mut cc = Controller::new(alg);
            cc.init(MSS, 10 * MSS);
            // One stretch ACK per round trip for the whole flight.
            for round in 0..5 {
                let flight = cc.cwnd();
                cc.on_ack(&AckSample { now: round * 10, acked: flight, flight, srtt_ms: Some(10.0) });
            }
            assert_eq!(cc.cwnd(), 320 * MSS, "{alg:?}");
        }
    }

    #[test]
    fn slow_start_stops_at_ssthresh_and_the_rest_goes_to_avoidance() {
        let mut cc = NewReno::new();
        cc.init(MSS, 10 * MSS);
        cc.window.ssthresh = 15 * MSS;
        cc.on_ack(&AckSample { now: 0, acked: 10 * MSS, flight: 10 * MSS, srtt_ms: None });
        // 5 segments of slow start reach ssthresh; 5 more count towards the 15-byte-window.
        assert_eq!(cc.cwnd(), 15 * MSS);
        assert_eq!(cc.bytes_acked, 5 * MSS);
    }

    #[test]
    fn no_growth_while_application_limited() {
        for alg in [Algorithm::NewReno, Algorithm::Cubic] {
            let mut cc = Controller::new(alg);
            cc.init(MSS, 10 * MSS);
            cc.on_ack(&AckSample { now: 0, acked: 2 * MSS, flight: 2 * MSS, srtt_ms: None });
            assert_eq!(cc.cwnd(), 10 * MSS, "{alg:?}");
        }
    }

    #[test]
    fn newreno_halves_and_adds_one_segment_per_round_trip() {
        let mut cc = NewReno::new();
        cc.init(MSS, 10 * MSS);
        cc.on_congestion(0, 40 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (20 * MSS, 20 * MSS));
        let trace = drive(&mut cc, 0, 100, 5);
        let windows: Vec<f64> = trace.iter().map(|p| p.1).collect();
        assert_eq!(windows, [21.0, 22.0, 23.0, 24.0, 25.0]);
        cc.on_rto(0, 30 * MSS, true);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 15 * MSS));
        cc.on_rto(0, 30 * MSS, false);
        assert_eq!(cc.ssthresh(), 15 * MSS, "a repeated timeout keeps ssthresh");
    }

    #[test]
    fn cubic_constants_and_k() {
        assert!((CUBIC_ALPHA - 0.9 / 1.7).abs() < 1e-12);
        // W_max 100 segments, reduced to 70: K = cbrt(30 / 0.4) = cbrt(75).
        let k = cubic_k(100.0, 70.0);
        assert!((k - 75f64.cbrt()).abs() < 1e-12 && (k - 4.2172).abs() < 1e-4);
        assert!((w_cubic(0.0, k, 100.0) - 70.0).abs() < 1e-9, "the curve starts at cwnd_epoch");
        assert!((w_cubic(k, k, 100.0) - 100.0).abs() < 1e-12, "and reaches W_max at K");
        assert!((w_cubic(k + 2.0, k, 100.0) - 103.2).abs() < 1e-9, "convex beyond");
    }

    #[test]
    fn cubic_reduction_uses_beta_and_fast_convergence() {
        let mut cc = Cubic::new();
        cc.init(MSS, 100 * MSS);
        cc.on_congestion(0, 100 * MSS);
        assert_eq!(cc.ssthresh(), 70 * MSS);
        assert_eq!(cc.cwnd(), 70 * MSS);
        assert_eq!(cc.w_max(), 100.0);
        // A second loss below the previous W_max: W_max = cwnd·(1 + β)/2 (§4.7).
        cc.set_cwnd(80 * MSS);
        cc.on_congestion(0, 80 * MSS);
        assert!((cc.w_max() - 80.0 * 0.85).abs() < 1e-9);
        assert_eq!(cc.cwnd(), 56 * MSS);
        // Above it: W_max is the window itself.
        cc.set_cwnd(90 * MSS);
        cc.on_congestion(0, 90 * MSS);
        assert_eq!(cc.w_max(), 90.0);
        assert_eq!(cc.ssthresh(), 63 * MSS);
    }

    #[test]
    fn cubic_window_follows_the_curve_on_a_long_path() {
        // RTT 100 ms and W_max 100: for the first 5.5 s W_cubic stays above Reno's W_est (0.53
        // segments per round trip, 1 once past the old window), so cwnd follows the curve:
        // each ACK moves it towards W_cubic(t + RTT), which makes it trail that target by
        // about one round trip, i.e. cwnd(t) ≈ W_cubic(t), with K as the RFC computes it.
        let rtt = 100u64;
        let mut cc = Cubic::new();
        cc.init(MSS, 100 * MSS);
        cc.on_congestion(1_000, 100 * MSS);
        assert_eq!(cc.cwnd(), 70 * MSS);
        let start = 1_000;
        let trace = drive(&mut cc, start, rtt, 55);
        let k = cc.k().unwrap();
        assert!((k - cubic_k(100.0, 70.0)).abs() < 1e-9);
        let rounds_per_s = 1000.0 / rtt as f64;
        let reno_switch = 30.0 / (CUBIC_ALPHA * rounds_per_s);
        let mut worst = 0f64;
        for &(now, w) in &trace {
            let t = (now - start) as f64 / 1000.0;
            let expect = w_cubic(t, k, 100.0);
            let w_est = if t < reno_switch {
                70.0 + CUBIC_ALPHA * t * rounds_per_s
            } else {
                100.0 + (t - reno_switch) * rounds_per_s
            };
            assert!(expect > w_est, "t={t}: the test stays in the cubic region");
            worst = worst.max((w - expect).abs());
        }
        assert!(worst < 0.25, "cwnd within a quarter segment of W_cubic(t), worst {worst:.3}");
        // Concave below K, flat near K, convex past it.
        let at = |secs: f64| trace.iter().find(|p| (p.0 - start) as f64 >= secs * 1000.0).unwrap().1;
        assert!(at(1.0) - at(0.0) > 2.0 * (at(3.0) - at(2.0)));
        assert!((at(k) - 100.0).abs() < 0.5);
        assert!(at(5.5) - at(5.0) > 2.0 * (at(4.7) - at(4.2)));
    }

    #[test]
    fn cubic_is_reno_friendly_on_a_short_path() {
        // RTT 2 ms: Reno's W_est (α = 0.53 per round trip) outruns the cubic curve, and cwnd
        // follows W_est (§4.3) until it passes the window before the loss, then α = 1.
        let rtt = 2u64;
        let mut cc = Cubic::new();
        cc.init(MSS, 100 * MSS);
        cc.on_congestion(0, 100 * MSS);
        let trace = drive(&mut cc, 0, rtt, 40);
        for (i, &(_, w)) in trace.iter().enumerate() {
            let reno = 70.0 + CUBIC_ALPHA * (i + 1) as f64;
            assert!((w - reno).abs() < 1.0, "round {i}: cwnd {w:.2} vs W_est {reno:.2}");
        }
        let mut cc2 = Cubic::new();
        cc2.init(MSS, 20 * MSS);
        cc2.on_congestion(0, 20 * MSS);
        let trace = drive(&mut cc2, 0, rtt, 40);
        let last = trace.last().unwrap().1;
        let prev = trace[trace.len() - 11].1;
        assert!((last - prev - 10.0).abs() < 1.0, "past cwnd_prior W_est grows 1 per round trip");
    }

    #[test]
    fn cubic_after_a_timeout_starts_a_flat_curve() {
        let mut cc = Cubic::new();
        cc.init(MSS, 100 * MSS);
        cc.on_rto(0, 100 * MSS, true);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 70 * MSS));
        // Slow start back to ssthresh (1, 2, 4, … 64, 70 in seven round trips); the first
        // avoidance ACK opens a curve with K = 0 and W_max = the window at that moment (§4.8).
        drive(&mut cc, 0, 100, 6);
        assert_eq!(cc.cwnd(), 64 * MSS);
        assert_eq!(cc.k(), None);
        drive(&mut cc, 600, 100, 1);
        assert_eq!(cc.k(), Some(0.0));
        let w = cc.cwnd();
        assert!((70 * MSS..71 * MSS).contains(&w), "{w}");
        // The flat curve grows by micro-segments; the Reno-friendly estimate adds α per round.
        drive(&mut cc, 700, 100, 1);
        let grown = (cc.cwnd() - w) as f64 / MSS as f64;
        assert!((grown - CUBIC_ALPHA).abs() < 0.05, "{grown}");
    }

    #[test]
    fn cubic_curve_freezes_while_application_limited() {
        let mut cc = Cubic::new();
        cc.init(MSS, 100 * MSS);
        cc.on_congestion(0, 100 * MSS);
        drive(&mut cc, 0, 100, 10);
        let w = cc.cwnd();
        // Ten idle seconds of ACKs for a small flight: no growth, and no jump afterwards.
        for i in 0..100 {
            cc.on_ack(&AckSample { now: 1_000 + i * 100, acked: MSS, flight: 2 * MSS, srtt_ms: Some(100.0) });
        }
        assert_eq!(cc.cwnd(), w);
        drive(&mut cc, 11_000, 100, 1);
        assert!(cc.cwnd() - w < 2 * MSS, "{} -> {}", w, cc.cwnd());
    }

    #[test]
    fn switching_keeps_the_window() {
        let mut cc = Controller::new(Algorithm::Cubic);
        cc.init(MSS, 10 * MSS);
        cc.on_congestion(0, 10 * MSS);
        cc.switch(Algorithm::NewReno);
        assert_eq!(cc.algorithm(), Algorithm::NewReno);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (7 * MSS, 7 * MSS));
        assert_eq!(Algorithm::from_name("CUBIC"), Some(Algorithm::Cubic));
        assert_eq!(Algorithm::from_name("bbr"), None);
    }
}
