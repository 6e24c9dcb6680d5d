//! The two clocks a message's timestamps can be in, and how to read them.
//!
//! Live capture stamps segments with `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`), which the
//! agent's own timers can compare directly; pcap files and saved traffic carry wall-clock
//! times. A source declares its clock, every message carries it in its envelope, and a
//! stage that needs wall-clock time (saved traffic, the middleware, a message broker)
//! converts with a [`ToWall`].

/// Which clock a timestamp was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// `CLOCK_MONOTONIC` of the capturing host (live capture).
    Monotonic,
    /// Nanoseconds since the Unix epoch (pcap files, saved traffic, other hosts).
    Realtime,
}

impl Clock {
    /// This clock's reading now, in nanoseconds.
    pub fn now_ns(self) -> u64 {
        match self {
            Clock::Monotonic => monotonic_ns(),
            Clock::Realtime => realtime_ns(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Monotonic => "monotonic",
            Clock::Realtime => "realtime",
        }
    }
}

/// Turns timestamps of either clock into wall-clock time, with the monotonic clock's
/// offset measured once (the two clocks drift apart only by NTP slewing).
#[derive(Clone, Copy, Debug)]
pub struct ToWall {
    monotonic_offset_ns: i128,
}

impl ToWall {
    /// The offset of this host's clocks now.
    pub fn measure() -> ToWall {
        ToWall::with_monotonic_offset(realtime_ns() as i128 - monotonic_ns() as i128)
    }

    /// A given offset of the monotonic clock (tests, tools).
    pub fn with_monotonic_offset(monotonic_offset_ns: i128) -> ToWall {
        ToWall {
            monotonic_offset_ns,
        }
    }

    /// What to add to a timestamp of `clock` to get wall-clock time.
    pub fn offset_ns(&self, clock: Clock) -> i128 {
        match clock {
            Clock::Monotonic => self.monotonic_offset_ns,
            Clock::Realtime => 0,
        }
    }
}

/// `CLOCK_REALTIME` in nanoseconds (wall clock, for saved traffic).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, so kernel timestamps
/// and the agent's timers compare directly.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
