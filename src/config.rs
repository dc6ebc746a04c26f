//! Configuration: [`Config`], its builder, and strict parsing of the `LEAKSCOPE_*`
//! environment variables into it.

use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Master switch: `1`/`true`/`on`/`yes` turn profiling on; unset, empty, `0`/`false`/`off`/`no` leave it off.
pub const ENV_ENABLE: &str = "LEAKSCOPE";
/// Output directory for profiles and reports (created if missing).
pub const ENV_DIR: &str = "LEAKSCOPE_DIR";
/// Mean bytes between allocation samples; `1` records every allocation.
pub const ENV_SAMPLE_BYTES: &str = "LEAKSCOPE_SAMPLE_BYTES";

/// Default output directory.
pub const DEFAULT_DIR: &str = "flamegraphs";
/// Default mean bytes between samples (512 KiB, as Go's `MemProfileRate`).
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

/// Every variable this version reads, with its default as written in the docs.
pub const ENV_VARS: &[(&str, &str)] = &[
    (ENV_ENABLE, "off"),
    (ENV_DIR, DEFAULT_DIR),
    (ENV_SAMPLE_BYTES, "512KiB"),
];

const BOOL_FORM: &str = "one of 1, true, on, yes (on) or 0, false, off, no (off)";
const BYTES_FORM: &str =
    "a byte count >= 1: an integer with an optional unit B, KiB, MiB or GiB (e.g. 1, 4096, 512KiB, 4MiB)";
const DIR_FORM: &str = "a non-empty directory path";

/// What leakscope does when a session starts.
///
/// Build one with [`Config::new`] (profiling on) and the builder methods, or read the
/// environment with [`Config::from_env`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Whether profiling runs at all.
    pub enabled: bool,
    /// Where files are written.
    pub dir: PathBuf,
    /// Mean bytes between allocation samples; 1 = every allocation.
    pub sample_bytes: u64,
    /// Seed of the sampler; `None` = a random seed per process.
    pub seed: Option<u64>,
}

impl Default for Config {
    /// Profiling off, default directory and sample rate.
    fn default() -> Config {
        Config {
            enabled: false,
            dir: PathBuf::from(DEFAULT_DIR),
            sample_bytes: DEFAULT_SAMPLE_BYTES,
            seed: None,
        }
    }
}

impl Config {
    /// Profiling on, with the defaults.
    #[must_use]
    pub fn new() -> Config {
        Config {
            enabled: true,
            ..Config::default()
        }
    }

    /// Turns profiling on or off.
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Config {
        self.enabled = on;
        self
    }

    /// Sets the output directory.
    #[must_use]
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Config {
        self.dir = dir.as_ref().to_path_buf();
        self
    }

    /// Sets the mean bytes between samples (values below 1 are taken as 1).
    #[must_use]
    pub fn sample_bytes(mut self, bytes: u64) -> Config {
        self.sample_bytes = bytes.max(1);
        self
    }

    /// Fixes the sampler's seed, so a deterministic program samples the same allocations
    /// on every run.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Config {
        self.seed = Some(seed);
        self
    }

    /// Reads the `LEAKSCOPE_*` variables strictly: the first invalid value is an error.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var_os(k))
    }

    /// Parses from any variable source (used by `from_env` and by tests).
    pub(crate) fn from_lookup(
        get: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(v) = text(&get, ENV_ENABLE, BOOL_FORM)? {
            c.enabled =
                parse_bool(&v).ok_or_else(|| ConfigError::new(ENV_ENABLE, &v, BOOL_FORM))?;
        }
        if let Some(v) = text(&get, ENV_DIR, DIR_FORM)? {
            if v.trim().is_empty() {
                return Err(ConfigError::new(ENV_DIR, &v, DIR_FORM));
            }
            c.dir = PathBuf::from(v);
        }
        if let Some(v) = text(&get, ENV_SAMPLE_BYTES, BYTES_FORM)? {
            c.sample_bytes = match parse_bytes(&v) {
                Some(n) if n >= 1 => n,
                _ => return Err(ConfigError::new(ENV_SAMPLE_BYTES, &v, BYTES_FORM)),
            };
        }
        Ok(c)
    }
}

/// The variable as UTF-8 text; unset -> None; not UTF-8 -> error.
fn text(
    get: &impl Fn(&str) -> Option<OsString>,
    var: &'static str,
    expected: &'static str,
) -> Result<Option<String>, ConfigError> {
    match get(var) {
        None => Ok(None),
        Some(v) => match v.into_string() {
            Ok(s) => Ok(Some(s)),
            Err(raw) => Err(ConfigError::new(var, &raw.to_string_lossy(), expected)),
        },
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "" | "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// Parses `4096`, `512KiB`, `4 MiB`, `1GiB`, `64B`.
pub(crate) fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A `LEAKSCOPE_*` variable with a value leakscope cannot use.
///
/// Its `Display` is one line naming the variable, the value and the accepted form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    var: &'static str,
    value: String,
    expected: &'static str,
}

impl ConfigError {
    fn new(var: &'static str, value: &str, expected: &'static str) -> ConfigError {
        ConfigError {
            var,
            value: value.to_string(),
            expected,
        }
    }

    /// The variable's name.
    pub fn var(&self) -> &str {
        self.var
    }

    /// The rejected value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The accepted form.
    pub fn expected(&self) -> &str {
        self.expected
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_when_unset() {
        assert_eq!(parse(&[]).unwrap(), Config::default());
        assert!(!Config::default().enabled);
    }

    #[test]
    fn switch_values() {
        for on in ["1", "true", "ON", "yes"] {
            assert!(parse(&[(ENV_ENABLE, on)]).unwrap().enabled, "{on}");
        }
        for off in ["", "0", "false", "Off", "no"] {
            assert!(!parse(&[(ENV_ENABLE, off)]).unwrap().enabled, "{off}");
        }
        let e = parse(&[(ENV_ENABLE, "maybe")]).unwrap_err();
        assert_eq!(e.var(), ENV_ENABLE);
        assert_eq!(e.value(), "maybe");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1"), Some(1));
        assert_eq!(parse_bytes("512KiB"), Some(512 * 1024));
        assert_eq!(parse_bytes("4 MiB"), Some(4 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("64B"), Some(64));
        for bad in [
            "",
            "KiB",
            "12x",
            "-1",
            "1.5MiB",
            "99999999999999999999",
            "1kb",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
        let e = parse(&[(ENV_SAMPLE_BYTES, "0")]).unwrap_err();
        assert_eq!(e.var(), ENV_SAMPLE_BYTES);
        let msg = e.to_string();
        assert!(
            msg.contains("LEAKSCOPE_SAMPLE_BYTES") && msg.contains("\"0\"") && msg.contains("KiB"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn dir_must_not_be_empty() {
        assert_eq!(
            parse(&[(ENV_DIR, "out/x")]).unwrap().dir,
            PathBuf::from("out/x")
        );
        assert_eq!(parse(&[(ENV_DIR, " ")]).unwrap_err().var(), ENV_DIR);
    }

    #[test]
    fn documented_defaults_are_the_parser_defaults() {
        let d = Config::default();
        for (var, default) in ENV_VARS {
            let parsed = match *var {
                ENV_ENABLE => parse(&[(var, default)]).unwrap().enabled == d.enabled,
                _ => parse(&[(var, default)]).unwrap() == d,
            };
            assert!(parsed, "{var}={default} is not the default");
        }
    }
}
