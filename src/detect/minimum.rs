//! How much growth counts, and how finely the heap must be sampled to see it: pure rules
//! of the window's length and the heap's size.
//!
//! * **A rate floor.** The detector is built to find leaks of [`MIN_RATE`] (16 KiB/s) and
//!   more. The least growth that counts over a window is that rate times the window, so
//!   the same leak is found whether the window is 6 s or 10 min.
//! * **A relative floor for the whole heap.** In-flight memory swings with load, and its
//!   swings grow with the heap: the whole heap must also grow by 2% of its size per
//!   minute ([`HEAP_SHARE_PER_SEC`]). A single site is judged on the rate floor alone: its
//!   growth is checked against its own sampling noise and the ages of its blocks, which
//!   do not grow with the heap.
//! * **Samples enough to see that rate.** A site's estimate is made of samples, one per
//!   `R` bytes allocated on average (`LEAKSCOPE_SAMPLE_BYTES`); a leak of rate `F` gains
//!   `F × W / R` samples over a window `W`. With `LEAKSCOPE_SAMPLE_BYTES=auto`, `R` is
//!   chosen so that a leak at the rate floor gains [`SAMPLES_AT_MIN_RATE`] samples a
//!   window (`R = MIN_RATE × W / 16`: 1 KiB per second of window), between
//!   [`MIN_AUTO_SAMPLE_BYTES`] and [`MAX_AUTO_SAMPLE_BYTES`]. A site's growth must stand
//!   four standard deviations above its sampling noise (`site.rs`), about `√n` for `n`
//!   new samples: sixteen samples of a leak at 16 KiB/s, twenty at 20 KiB/s, make it
//!   pass within a window or two.

use std::time::Duration;

/// The least leak rate the detector is built to find, bytes per second.
pub(crate) const MIN_RATE: f64 = 16.0 * 1024.0;
/// The whole heap's relative floor: 2% of the live heap per minute, per second.
pub(crate) const HEAP_SHARE_PER_SEC: f64 = 0.02 / 60.0;
/// Samples a leak at [`MIN_RATE`] gains over a window at the automatic sample rate.
pub(crate) const SAMPLES_AT_MIN_RATE: f64 = 16.0;
/// The automatic sample rate's lower bound (short windows).
pub(crate) const MIN_AUTO_SAMPLE_BYTES: u64 = 4 * 1024;
/// The automatic sample rate's upper bound (long windows, or no monitor), as Go's
/// `MemProfileRate`.
pub(crate) const MAX_AUTO_SAMPLE_BYTES: u64 = crate::env::DEFAULT_SAMPLE_BYTES;

/// The least growth of the whole heap over `window_secs` for a `memory_leak`: the rate
/// floor, or 2% a minute of `live_at_start` (the live heap at the window's start) if
/// that is more.
pub(crate) fn heap_min_growth(window_secs: f64, live_at_start: f64) -> f64 {
    window_secs * MIN_RATE.max(live_at_start * HEAP_SHARE_PER_SEC)
}

/// The least growth of one site over `window_secs` for a `memory_leak` raised by that
/// site alone: the rate floor. A quarter of it lists a site among the growing ones.
pub(crate) fn site_min_growth(window_secs: f64) -> f64 {
    window_secs * MIN_RATE
}

/// `LEAKSCOPE_SAMPLE_BYTES=auto`: the mean bytes between samples for a leak window of
/// `window` (with the monitor on; [`MAX_AUTO_SAMPLE_BYTES`] without it).
pub(crate) fn auto_sample_bytes(window: Duration, monitor: bool) -> u64 {
    if !monitor {
        return MAX_AUTO_SAMPLE_BYTES;
    }
    let r = MIN_RATE * window.as_secs_f64() / SAMPLES_AT_MIN_RATE;
    (r as u64).clamp(MIN_AUTO_SAMPLE_BYTES, MAX_AUTO_SAMPLE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn minimum_growth_scales_with_the_window_and_the_heap() {
        // The rate floor: 16 KiB/s whatever the window.
        assert_eq!(heap_min_growth(6.0, 0.0), 96.0 * KIB);
        assert_eq!(heap_min_growth(600.0, 0.0), 9600.0 * KIB);
        assert_eq!(site_min_growth(60.0), 960.0 * KIB);
        // 2% a minute of a large heap: 4 MiB over a minute at 200 MiB.
        assert!((heap_min_growth(60.0, 200.0 * MIB) - 4.0 * MIB).abs() < 1.0);
        assert!((heap_min_growth(6.0, 200.0 * MIB) - 0.4 * MIB).abs() < 1.0);
        // Sites are not held to the heap's relative floor.
        assert!(site_min_growth(60.0) < heap_min_growth(60.0, 200.0 * MIB));
    }

    #[test]
    fn the_automatic_sample_rate_sees_the_rate_floor() {
        let at = |s: u64| auto_sample_bytes(Duration::from_secs(s), true);
        assert_eq!(at(6), 6 * 1024);
        assert_eq!(at(60), 60 * 1024);
        assert_eq!(at(600), 512 * 1024, "capped");
        assert_eq!(
            auto_sample_bytes(Duration::from_millis(100), true),
            4 * 1024,
            "floored"
        );
        assert_eq!(auto_sample_bytes(Duration::from_secs(6), false), 512 * 1024);
        // A leak at the floor gains sixteen samples a window below the cap.
        for s in [6, 30, 60, 200] {
            let samples = MIN_RATE * s as f64 / at(s) as f64;
            assert!((samples - 16.0).abs() < 0.01, "{s} s: {samples}");
        }
    }
}
