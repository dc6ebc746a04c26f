//! Process figures the allocator cannot see: resident set size and OS thread count,
//! from `/proc/self/status` on Linux (one read gives both). Elsewhere: unknown.

/// What the OS says about this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Process {
    /// Resident set size in bytes (`VmRSS`).
    pub(crate) rss_bytes: Option<u64>,
    /// OS threads (`Threads`).
    pub(crate) threads: Option<u64>,
}

/// Reads the process's figures now. Allocates (a small string): cold side only.
pub(crate) fn read() -> Process {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| parse_status(&s))
            .unwrap_or_default()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Process::default()
    }
}

/// Parses the `VmRSS:` (kB) and `Threads:` lines of `/proc/<pid>/status`.
pub(crate) fn parse_status(status: &str) -> Process {
    let mut p = Process::default();
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            p.rss_bytes = v
                .trim()
                .strip_suffix("kB")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .map(|kb| kb * 1024);
        } else if let Some(v) = line.strip_prefix("Threads:") {
            p.threads = v.trim().parse().ok();
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_threads() {
        let s = "Name:\tx\nVmRSS:\t    1234 kB\nThreads:\t7\n";
        assert_eq!(
            parse_status(s),
            Process {
                rss_bytes: Some(1234 * 1024),
                threads: Some(7)
            }
        );
        assert_eq!(parse_status("junk"), Process::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set_and_threads() {
        let p = read();
        assert!(p.rss_bytes.is_some_and(|b| b > 0), "{p:?}");
        assert!(p.threads.is_some_and(|n| n >= 1), "{p:?}");
    }
}
