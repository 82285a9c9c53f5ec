//! The sender's SACK scoreboard (RFC 2018, RFC 6675 §3): the ranges above SND.UNA the peer
//! reported holding, ascending, disjoint and bounded. The connection ([`crate::conn`]) feeds it
//! SACK blocks and asks it the questions of RFC 6675 — SACKed bytes below or above a point,
//! the next hole, and the DupThresh part of IsLost.

use crate::seq;

/// Most SACKed ranges the sender's scoreboard keeps (RFC 6675 §3 allows forgetting: SACK
/// information is advisory). Beyond this the highest ranges are dropped, which only makes the
/// sender more conservative.
pub const MAX_SCOREBOARD: usize = 16;

/// SACKed ranges `[left, right)` above SND.UNA, ascending and disjoint, at most
/// [`MAX_SCOREBOARD`] of them.
#[derive(Debug, Default, Clone)]
pub struct Scoreboard {
    ranges: Vec<(u32, u32)>,
}

impl Scoreboard {
    /// An empty scoreboard.
    pub fn new() -> Self {
        Scoreboard::default()
    }

    /// Adds the SACKed range `[left, right)`, merging what overlaps or touches, and drops the
    /// highest ranges past [`MAX_SCOREBOARD`].
    pub fn insert(&mut self, mut left: u32, mut right: u32) {
        let v = &mut self.ranges;
        let mut i = 0;
        while i < v.len() && seq::lt(v[i].1, left) {
            i += 1;
        }
        let mut j = i;
        while j < v.len() && seq::le(v[j].0, right) {
            if seq::lt(v[j].0, left) {
                left = v[j].0;
            }
            if seq::gt(v[j].1, right) {
                right = v[j].1;
            }
            j += 1;
        }
        v.splice(i..j, [(left, right)]);
        v.truncate(MAX_SCOREBOARD);
    }

    /// Forgets what `una` (SND.UNA) covers.
    pub fn prune(&mut self, una: u32) {
        self.ranges.retain_mut(|r| {
            if seq::le(r.1, una) {
                return false;
            }
            if seq::lt(r.0, una) {
                r.0 = una;
            }
            true
        });
    }

    /// Forgets everything (RFC 2018 §8: after a timeout SACK information is not trusted).
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Number of ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no range is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// The highest range.
    pub fn last(&self) -> Option<(u32, u32)> {
        self.ranges.last().copied()
    }

    /// SACKed bytes below `point`.
    pub fn sacked_below(&self, point: u32) -> usize {
        let mut n = 0;
        for &(l, r) in &self.ranges {
            if seq::ge(l, point) {
                break;
            }
            let r = if seq::lt(r, point) { r } else { point };
            n += seq::diff(r, l) as usize;
        }
        n
    }

    /// SACKed bytes above `point` (a point below `una` counts from `una`).
    pub fn sacked_above(&self, point: u32, una: u32) -> usize {
        let total: usize = self.ranges.iter().map(|&(l, r)| seq::diff(r, l) as usize).sum();
        let point = if seq::lt(point, una) { una } else { point };
        total - self.sacked_below(point)
    }

    /// The DupThresh part of RFC 6675 IsLost as one edge, starting from `edge`: raised to the
    /// highest point below which every unSACKed byte has more than (`dup_thresh` − 1)·`smss`
    /// SACKed bytes, or `dup_thresh` SACKed ranges, above it.
    pub fn lost_edge(&self, mut edge: u32, dup_thresh: usize, smss: usize) -> u32 {
        let need = (dup_thresh - 1) * smss + 1;
        let mut acc = 0usize;
        for (k, &(l, r)) in self.ranges.iter().rev().enumerate() {
            let len = seq::diff(r, l) as usize;
            if acc + len >= need {
                let e = r.wrapping_sub((need - acc) as u32);
                if seq::gt(e, edge) {
                    edge = e;
                }
                break;
            }
            acc += len;
            if k + 1 == dup_thresh && seq::gt(l, edge) {
                edge = l;
                break;
            }
        }
        edge
    }

    /// The first unSACKed range starting at or after `from` (at least `una`) and below `limit`.
    pub fn next_hole(&self, from: u32, limit: u32, una: u32) -> Option<(u32, u32)> {
        let mut s = if seq::lt(from, una) { una } else { from };
        let mut end = limit;
        for &(l, r) in &self.ranges {
            if seq::le(r, s) {
                continue;
            }
            if seq::le(l, s) {
                s = r;
                continue;
            }
            end = if seq::lt(l, limit) { l } else { limit };
            break;
        }
        if seq::lt(s, end) {
            Some((s, end))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_touching_and_overlapping_ranges() {
        let mut s = Scoreboard::new();
        s.insert(100, 200);
        s.insert(300, 400);
        s.insert(200, 300);
        assert_eq!(s.ranges(), &[(100, 400)]);
        s.insert(50, 120);
        assert_eq!(s.ranges(), &[(50, 400)]);
    }

    #[test]
    fn bounded_keeps_the_lowest_ranges() {
        let mut s = Scoreboard::new();
        for i in 0..(MAX_SCOREBOARD as u32 + 4) {
            s.insert(i * 100, i * 100 + 10);
        }
        assert_eq!(s.len(), MAX_SCOREBOARD);
        assert_eq!(s.ranges()[0], (0, 10));
    }

    #[test]
    fn prune_clips_at_una_and_holes_skip_sacked_data() {
        let mut s = Scoreboard::new();
        s.insert(100, 200);
        s.insert(300, 400);
        s.prune(150);
        assert_eq!(s.ranges(), &[(150, 200), (300, 400)]);
        assert_eq!(s.next_hole(150, 500, 150), Some((200, 300)));
        assert_eq!(s.next_hole(350, 500, 150), Some((400, 500)));
        assert_eq!(s.sacked_below(350), 50 + 50);
        assert_eq!(s.sacked_above(0, 150), 150);
    }

    #[test]
    fn lost_edge_needs_dup_thresh_worth_of_sacked_data() {
        let mut s = Scoreboard::new();
        s.insert(2000, 3000);
        // 1000 SACKed bytes < 2·1000 + 1 needed: nothing lost beyond the start edge.
        assert_eq!(s.lost_edge(0, 3, 1000), 0);
        s.insert(4000, 6000);
        // 3000 bytes above: the edge lies where 2001 SACKed bytes are above it, counted from the
        // top (2000 in the top range, 1 more in the range below).
        assert_eq!(s.lost_edge(0, 3, 1000), 2999);
    }
}
