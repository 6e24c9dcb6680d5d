//! When each record of saved traffic is due: the gaps between recorded timestamps,
//! divided by the speed factor and cut to the longest wait, added up from the start.
//! Pure arithmetic, so pacing can be tested without a clock.

use std::time::Duration;

/// Release times of successive records, relative to the start of the replay.
#[derive(Debug)]
pub struct Schedule {
    speed: f64,
    max_wait: Option<Duration>,
    /// The latest timestamp seen in this pass.
    prev_ts: Option<u64>,
    at: Duration,
}

impl Schedule {
    /// `speed` 2.0 halves every gap, infinity removes them; `max_wait` caps any one gap
    /// (after scaling).
    pub fn new(speed: f64, max_wait: Option<Duration>) -> Schedule {
        Schedule {
            speed: if speed > 0.0 { speed } else { 1.0 },
            max_wait,
            prev_ts: None,
            at: Duration::ZERO,
        }
    }

    /// When the record stamped `ts_ns` is due. Records come in timestamp order; one
    /// stamped earlier than its predecessor (a clock step in the recording) is due at
    /// once rather than being held back.
    pub fn due(&mut self, ts_ns: u64) -> Duration {
        if let Some(prev) = self.prev_ts {
            let gap = ts_ns.saturating_sub(prev);
            let mut wait = Duration::from_secs_f64(gap as f64 / 1e9 / self.speed);
            if let Some(max) = self.max_wait {
                wait = wait.min(max);
            }
            self.at += wait;
        }
        self.prev_ts = Some(self.prev_ts.map_or(ts_ns, |p| p.max(ts_ns)));
        self.at
    }

    /// A new pass over the files (looping): its first record is due right after the last
    /// one of the previous pass.
    pub fn new_pass(&mut self) {
        self.prev_ts = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn gaps_are_kept_at_full_speed() {
        let mut s = Schedule::new(1.0, None);
        let t0 = 1_700_000_000_000 * MS;
        assert_eq!(s.due(t0), Duration::ZERO);
        assert_eq!(s.due(t0 + 10 * MS), Duration::from_millis(10));
        assert_eq!(s.due(t0 + 25 * MS), Duration::from_millis(25));
    }

    #[test]
    fn speed_scales_every_gap() {
        let mut fast = Schedule::new(2.0, None);
        let mut slow = Schedule::new(0.5, None);
        for (ts, f, s) in [(0, 0, 0), (100, 50, 200), (300, 150, 600)] {
            assert_eq!(fast.due(ts * MS), Duration::from_millis(f));
            assert_eq!(slow.due(ts * MS), Duration::from_millis(s));
        }
    }

    #[test]
    fn max_speed_has_no_gaps() {
        let mut s = Schedule::new(f64::INFINITY, None);
        for ts in [0, 100, 3_600_000] {
            assert_eq!(s.due(ts * MS), Duration::ZERO);
        }
    }

    #[test]
    fn max_wait_cuts_long_gaps_only() {
        let mut s = Schedule::new(1.0, Some(Duration::from_secs(1)));
        s.due(0);
        assert_eq!(s.due(500 * MS), Duration::from_millis(500));
        assert_eq!(s.due(3_600_000 * MS), Duration::from_millis(1500));
    }

    #[test]
    fn earlier_timestamps_are_due_at_once_and_do_not_rewind() {
        let mut s = Schedule::new(1.0, None);
        s.due(1000 * MS);
        assert_eq!(s.due(900 * MS), Duration::ZERO);
        // The gap counts from the latest timestamp, not the stray one.
        assert_eq!(s.due(1010 * MS), Duration::from_millis(10));
    }

    #[test]
    fn a_new_pass_follows_the_previous_one() {
        let mut s = Schedule::new(1.0, None);
        s.due(0);
        s.due(40 * MS);
        s.new_pass();
        assert_eq!(s.due(0), Duration::from_millis(40));
        assert_eq!(s.due(5 * MS), Duration::from_millis(45));
    }
}
