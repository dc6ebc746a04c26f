//! Process CPU use from `/proc/self/stat`: user + system time of all threads (live and
//! exited) over wall time, as a percentage of one core. Feeds the `cpu_limit` alert.
//!
//! The monitor keeps one [`CpuTime`] per tick and compares the newest with the one taken
//! a window earlier: `newest.percent_since(&oldest)`.

use std::fs;
use std::io;
use std::time::Instant;

/// Cumulative CPU time of the process at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuTime {
    /// utime + stime, in clock ticks (`sysconf(_SC_CLK_TCK)` per second).
    ticks: u64,
    ticks_per_sec: u64,
    at: Instant,
}

impl CpuTime {
    /// Reads `/proc/self/stat` now.
    pub(crate) fn now() -> io::Result<CpuTime> {
        let at = Instant::now();
        let stat = fs::read_to_string("/proc/self/stat")?;
        let ticks = stat_cpu_ticks(&stat).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/stat")
        })?;
        Ok(CpuTime {
            ticks,
            ticks_per_sec: clock_ticks_per_sec(),
            at,
        })
    }

    /// Average CPU use between `earlier` and `self`, in percent of one core (200 = two
    /// cores busy); `None` if no wall time passed.
    pub(crate) fn percent_since(&self, earlier: &CpuTime) -> Option<f64> {
        let wall = self.at.checked_duration_since(earlier.at)?.as_secs_f64();
        percent_of_core(
            self.ticks.saturating_sub(earlier.ticks),
            self.ticks_per_sec,
            wall,
        )
    }

    /// True if the average since `earlier` is above `limit_percent` (the `cpu_limit`
    /// alert's condition).
    pub(crate) fn exceeds(&self, earlier: &CpuTime, limit_percent: u32) -> bool {
        self.percent_since(earlier)
            .is_some_and(|p| p > f64::from(limit_percent))
    }
}

/// `ticks` of CPU time over `wall_secs` of wall time, in percent of one core.
fn percent_of_core(ticks: u64, ticks_per_sec: u64, wall_secs: f64) -> Option<f64> {
    if wall_secs <= 0.0 || ticks_per_sec == 0 {
        return None;
    }
    Some(ticks as f64 / ticks_per_sec as f64 / wall_secs * 100.0)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may contain spaces and `)`, so fields are counted
/// from the last `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': field 3 (state) is index 0, so utime (14) is index 11, stime (15) is 12.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Clock ticks per second of `/proc`'s CPU times (100 where the C library does not say).
fn clock_ticks_per_sec() -> u64 {
    crate::sys::clock_ticks_per_sec().unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_utime_and_stime() {
        let line = "4242 (my prog) S 1 4242 4242 0 -1 4194560 1183 0 0 0 350 27 0 0 20 0 3 0 \
                    123 10000 200 18446744073709551615";
        assert_eq!(stat_cpu_ticks(line), Some(377));
        // A command name with ') ' inside: counting from the first ')' would be wrong.
        let tricky = "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(stat_cpu_ticks(tricky), Some(11));
        assert_eq!(stat_cpu_ticks("7 (x) R 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis 1 2 3"), None);
        assert_eq!(stat_cpu_ticks("7 (x) R 1 7 7 0 -1 0 0 0 0 0 ab 6 0"), None);
    }

    #[test]
    fn percent_of_one_core() {
        assert_eq!(percent_of_core(100, 100, 1.0), Some(100.0));
        assert_eq!(percent_of_core(300, 100, 2.0), Some(150.0));
        assert_eq!(percent_of_core(0, 100, 5.0), Some(0.0));
        assert_eq!(percent_of_core(10, 100, 0.0), None);
    }

    #[test]
    fn exceeds_compares_with_the_limit() {
        let t0 = Instant::now();
        let a = CpuTime {
            ticks: 1000,
            ticks_per_sec: 100,
            at: t0,
        };
        let b = CpuTime {
            ticks: 1000 + 90 * 10, // 9 s of CPU in 10 s: 90%
            ticks_per_sec: 100,
            at: t0 + Duration::from_secs(10),
        };
        let p = b.percent_since(&a).unwrap();
        assert!((p - 90.0).abs() < 1e-9, "{p}");
        assert!(b.exceeds(&a, 80));
        assert!(!b.exceeds(&a, 90));
        assert_eq!(a.percent_since(&b), None, "time runs forward only");
    }

    #[test]
    fn reads_this_process() {
        let a = CpuTime::now().expect("/proc/self/stat");
        // Burn CPU until the kernel has charged at least one tick (no timing assumed).
        let mut x = 0u64;
        let b = loop {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            let b = CpuTime::now().unwrap();
            if b.ticks > a.ticks {
                break b;
            }
        };
        let p = b.percent_since(&a).unwrap();
        assert!(p > 0.0, "{p}");
        assert!(a.ticks_per_sec >= 1);
    }
}
