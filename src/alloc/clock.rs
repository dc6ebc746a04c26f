//! The monotonic clock the hot side stamps sampled blocks with: `CLOCK_MONOTONIC` in
//! nanoseconds, read through the vDSO (no lock, no allocation, async-signal-safe). The
//! cold side reads the same clock to age the blocks.

/// Nanoseconds of `CLOCK_MONOTONIC` (0 if the clock cannot be read).
#[inline]
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; CLOCK_MONOTONIC is always available on
    // the platforms this crate builds for. On failure `ts` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec.clamp(0, 999_999_999) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = now_ns();
        assert!(a > 0 && b >= a + 1_000_000, "{a} {b}");
    }
}
