//! Whether a finding becomes an alert, and whether that alert writes files: the
//! cooldown per kind and the cap on alerts that write files ([`Raiser`]); then the
//! alert's steps in order ([`raise`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::finding::{Evidence, Finding};
use super::{build, deliver, dump, AlertKind};
use crate::config::Config;
use crate::context::Context;
use crate::diag;

/// What [`Raiser::admit`] decided for a finding that is raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dump {
    /// Past the cap: the alert is delivered without files.
    None,
    /// The alert writes its files.
    Files {
        /// The cap, when this alert is the last one it allows.
        cap_reached: Option<u32>,
    },
}

/// The cooldown per kind and the cap on alerts that write files, over a session.
#[derive(Debug)]
pub(crate) struct Raiser {
    cooldown: Duration,
    max_dumps: u32,
    dumps: u32,
    last: HashMap<AlertKind, Instant>,
}

impl Raiser {
    /// A raiser with the cooldown and cap of `config`, nothing raised yet.
    pub(crate) fn new(config: &Config) -> Raiser {
        Raiser {
            cooldown: config.cooldown,
            max_dumps: config.max_dumps,
            dumps: 0,
            last: HashMap::new(),
        }
    }

    /// `None` if an alert of `kind` was raised less than the cooldown before `now` (the
    /// finding is dropped); otherwise records the alert and says whether it writes
    /// files.
    pub(crate) fn admit(&mut self, kind: AlertKind, now: Instant) -> Option<Dump> {
        if self
            .last
            .get(&kind)
            .is_some_and(|&t| now.duration_since(t) < self.cooldown)
        {
            return None;
        }
        self.last.insert(kind, now);
        if self.dumps >= self.max_dumps {
            return Some(Dump::None);
        }
        self.dumps += 1;
        Some(Dump::Files {
            cap_reached: (self.dumps == self.max_dumps).then_some(self.max_dumps),
        })
    }
}

/// Raises the alert of `f`, admitted with `dump`, from the monitor's evidence `ev`:
/// builds it, writes its files if `dump` says so, delivers it. Returns the files written.
pub(crate) fn raise(ctx: &Arc<Context>, f: &Finding, ev: &Evidence, dump: Dump) -> Vec<PathBuf> {
    let suspects = build::suspects(ev);
    let mut alert = build::alert(f, &suspects);
    if let Dump::Files { cap_reached } = dump {
        alert.files = dump::write(ctx, f, ev, &alert, &suspects);
        if let Some(max) = cap_reached {
            diag::say(format_args!(
                "{max} alerts written (LEAKSCOPE_MAX_DUMPS); later alerts write no files"
            ));
        }
    }
    deliver::deliver(&alert);
    alert.files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_per_kind_then_the_cap() {
        let config = Config::new().cooldown(Duration::from_secs(60)).max_dumps(2);
        let mut r = Raiser::new(&config);
        let t0 = Instant::now();
        let leak = AlertKind::MemoryLeak;
        assert_eq!(r.admit(leak, t0), Some(Dump::Files { cap_reached: None }));
        assert_eq!(r.admit(leak, t0 + Duration::from_secs(59)), None, "cooling");
        assert_eq!(
            r.admit(AlertKind::HeapLimit, t0 + Duration::from_secs(1)),
            Some(Dump::Files {
                cap_reached: Some(2)
            }),
            "another kind has its own cooldown"
        );
        assert_eq!(
            r.admit(leak, t0 + Duration::from_secs(60)),
            Some(Dump::None),
            "past the cap: raised without files"
        );
    }
}
