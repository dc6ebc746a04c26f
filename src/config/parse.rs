//! Strict parsing of the `LEAKSCOPE_*` variables into a [`Config`]: the first invalid
//! value is a [`ConfigError`] naming the variable, the value and the accepted form.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, HttpToken};
use crate::alert::AlertKind;
use crate::env::*;
use crate::write::formats::parse_formats;

const BOOL_FORM: &str = "one of 1, true, on, yes (on) or 0, false, off, no (off)";
const BYTES_FORM: &str =
    "auto, or a byte count >= 1: an integer with an optional unit B, KiB, MiB or GiB (e.g. 1, 4096, 512KiB, 4MiB)";
const DIR_FORM: &str = "a non-empty directory path";
const BUDGET_FORM: &str =
    "a byte count >= 1MiB: an integer with an optional unit B, KiB, MiB or GiB (e.g. 16MiB, 64MiB)";
const HZ_FORM: &str = "an integer frequency in Hz from 1 to 10000 (e.g. 99)";
const SECONDS_FORM: &str = "a whole number of seconds, 0 to 86400 (0 = no automatic CPU profiles)";
const CPU_LIMIT_FORM: &str =
    "off, or a whole percentage of one core >= 1, optionally followed by % (e.g. 80, 150%)";
pub(super) const ON_FORM: &str = "none, or a comma-separated list of alert kinds from memory_leak, heap_limit, task_leak, task_limit, span_latency, cpu_limit";
const INTERVAL_FORM: &str =
    "a duration >= 1ms: an integer with a unit ms, s, m or h (e.g. 250ms, 1s, 5m)";
const MONITOR_FORM: &str =
    "off, or a duration >= 1ms: an integer with a unit ms, s, m or h (e.g. 250ms, 1s, 5m)";
const DURATION_FORM: &str = "a duration: an integer with a unit ms, s, m or h (e.g. 0s, 30s, 5m)";
const MIN_BYTES_FORM: &str =
    "auto, or a byte count >= 1: an integer with an optional unit B, KiB, MiB or GiB (e.g. 512KiB, 8MiB)";
const LIMIT_FORM: &str =
    "none, or a byte count >= 1: an integer with an optional unit B, KiB, MiB or GiB (e.g. 2GiB)";
const COUNT_FORM: &str = "a whole number >= 0 (e.g. 20)";
const FORMATS_FORM: &str =
    "none, or a comma-separated list from svg, folded, pprof, json, dhat (e.g. svg,pprof)";
const HTTP_FORM: &str =
    "off, a port (loopback), or an IP address and port (e.g. 6060, 127.0.0.1:6060, [::1]:6060, 0.0.0.0:6060)";
const TOKEN_FORM: &str =
    "none, or a bearer token: 1 to 4096 letters, digits and -._~+/, then optional = padding (e.g. the output of `openssl rand -hex 32`)";
const TOKEN_FILE_FORM: &str =
    "none, or a readable file holding a bearer token (1 to 4096 letters, digits and -._~+/, then optional =; surrounding whitespace is ignored)";
const TOKEN_BOTH_FORM: &str = "either LEAKSCOPE_HTTP_TOKEN or LEAKSCOPE_HTTP_TOKEN_FILE, not both";
const NAMES_FORM: &str = "none, or a comma-separated list of span names (e.g. request,job)";
const TASK_LIMIT_FORM: &str = "none, or a whole number of tasks >= 1 (e.g. 10000)";
const TOKIO_SPANS_FORM: &str = "hide or show";
const LATENCY_FORM: &str =
    "none, or comma-separated name=duration pairs with units ms, s, m or h (e.g. request=200ms,job=1s)";

/// Parses from any variable source (used by `from_env` and by tests).
/// Parses from any variable source (used by `Config::from_env` and by tests).
pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Config, ConfigError> {
    let mut c = Config::default();
    if let Some(v) = text(&get, ENV_ENABLE, BOOL_FORM)? {
        c.enabled = parse_bool(&v).ok_or_else(|| ConfigError::new(ENV_ENABLE, &v, BOOL_FORM))?;
    }
    if let Some(v) = text(&get, ENV_DIR, DIR_FORM)? {
        if v.trim().is_empty() {
            return Err(ConfigError::new(ENV_DIR, &v, DIR_FORM));
        }
        c.dir = PathBuf::from(v);
    }
    if let Some(v) = text(&get, ENV_SAMPLE_BYTES, BYTES_FORM)? {
        if !v.trim().eq_ignore_ascii_case("auto") {
            c.sample_bytes = match parse_bytes(&v) {
                Some(n) if n >= 1 => n,
                _ => return Err(ConfigError::new(ENV_SAMPLE_BYTES, &v, BYTES_FORM)),
            };
            c.sample_auto = false;
        }
    }
    if let Some(v) = text(&get, ENV_CPU_HZ, HZ_FORM)? {
        c.cpu_hz = match v.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_CPU_HZ).contains(&n) => n,
            _ => return Err(ConfigError::new(ENV_CPU_HZ, &v, HZ_FORM)),
        };
    }
    if let Some(v) = text(&get, ENV_CPU_SECONDS, SECONDS_FORM)? {
        c.cpu_seconds = match v.trim().parse::<u64>() {
            Ok(n) if n <= 86_400 => n,
            _ => return Err(ConfigError::new(ENV_CPU_SECONDS, &v, SECONDS_FORM)),
        };
    }
    if let Some(v) = text(&get, ENV_CPU_LIMIT, CPU_LIMIT_FORM)? {
        c.cpu_limit =
            parse_percent(&v).ok_or_else(|| ConfigError::new(ENV_CPU_LIMIT, &v, CPU_LIMIT_FORM))?;
    }
    if let Some(v) = text(&get, ENV_CPU_ON, ON_FORM)? {
        c.cpu_on = parse_kinds(&v).ok_or_else(|| ConfigError::new(ENV_CPU_ON, &v, ON_FORM))?;
    }
    if let Some(v) = text(&get, ENV_INTERVAL, MONITOR_FORM)? {
        if v.trim().eq_ignore_ascii_case("off") {
            c.monitor = false;
        } else {
            c.interval = match parse_duration(&v) {
                Some(d) if d >= Duration::from_millis(1) => d,
                _ => return Err(ConfigError::new(ENV_INTERVAL, &v, MONITOR_FORM)),
            };
        }
    }
    if let Some(v) = text(&get, ENV_LEAK_WINDOW, INTERVAL_FORM)? {
        c.leak_window = match parse_duration(&v) {
            Some(d) if d >= Duration::from_millis(1) => d,
            _ => return Err(ConfigError::new(ENV_LEAK_WINDOW, &v, INTERVAL_FORM)),
        };
    }
    if let Some(v) = text(&get, ENV_LEAK_MIN_BYTES, MIN_BYTES_FORM)? {
        c.leak_min_bytes = bytes_or(&v, "auto")
            .ok_or_else(|| ConfigError::new(ENV_LEAK_MIN_BYTES, &v, MIN_BYTES_FORM))?;
    }
    if let Some(v) = text(&get, ENV_HEAP_LIMIT, LIMIT_FORM)? {
        c.heap_limit =
            bytes_or(&v, "none").ok_or_else(|| ConfigError::new(ENV_HEAP_LIMIT, &v, LIMIT_FORM))?;
    }
    if let Some(v) = text(&get, ENV_COOLDOWN, DURATION_FORM)? {
        c.cooldown =
            parse_duration(&v).ok_or_else(|| ConfigError::new(ENV_COOLDOWN, &v, DURATION_FORM))?;
    }
    if let Some(v) = text(&get, ENV_MEMORY_BUDGET, BUDGET_FORM)? {
        c.memory_budget = match parse_bytes(&v) {
            Some(n) if n >= MIN_MEMORY_BUDGET => n,
            _ => return Err(ConfigError::new(ENV_MEMORY_BUDGET, &v, BUDGET_FORM)),
        };
    }
    if let Some(v) = text(&get, ENV_MAX_DUMPS, COUNT_FORM)? {
        c.max_dumps = v
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(ENV_MAX_DUMPS, &v, COUNT_FORM))?;
    }
    if let Some(v) = text(&get, ENV_FORMATS, FORMATS_FORM)? {
        c.formats =
            parse_formats(&v).ok_or_else(|| ConfigError::new(ENV_FORMATS, &v, FORMATS_FORM))?;
    }
    if let Some(v) = text(&get, ENV_HTTP, HTTP_FORM)? {
        c.http = parse_http(&v).ok_or_else(|| ConfigError::new(ENV_HTTP, &v, HTTP_FORM))?;
    }
    c.http_token = http_token(&get)?;
    if let Some(v) = text(&get, ENV_TASK_SPANS, NAMES_FORM)? {
        c.task_spans =
            parse_names(&v).ok_or_else(|| ConfigError::new(ENV_TASK_SPANS, &v, NAMES_FORM))?;
    }
    if let Some(v) = text(&get, ENV_TASK_LIMIT, TASK_LIMIT_FORM)? {
        c.task_limit = if v.trim().eq_ignore_ascii_case("none") {
            None
        } else {
            match v.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Some(n),
                _ => return Err(ConfigError::new(ENV_TASK_LIMIT, &v, TASK_LIMIT_FORM)),
            }
        };
    }
    if let Some(v) = text(&get, ENV_SPAN_LATENCY, LATENCY_FORM)? {
        c.span_latency = parse_latency(&v)
            .ok_or_else(|| ConfigError::new(ENV_SPAN_LATENCY, &v, LATENCY_FORM))?;
    }
    if let Some(v) = text(&get, ENV_TOKIO_SPANS, TOKIO_SPANS_FORM)? {
        c.tokio_spans = match v.trim().to_ascii_lowercase().as_str() {
            "hide" => false,
            "show" => true,
            _ => return Err(ConfigError::new(ENV_TOKIO_SPANS, &v, TOKIO_SPANS_FORM)),
        };
    }
    Ok(c)
}

/// `off`/empty -> `Some(None)`; `6060` -> loopback; `localhost:6060` -> loopback;
/// `ip:port` -> that address (port 0 = any free port).
fn parse_http(v: &str) -> Option<Option<SocketAddr>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Some(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            v.parse().ok()?,
        ))));
    }
    if let Some(port) = v.strip_prefix("localhost:") {
        return Some(Some(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            port.parse().ok()?,
        ))));
    }
    v.parse().ok().map(Some)
}

/// The token from `LEAKSCOPE_HTTP_TOKEN` or the file `LEAKSCOPE_HTTP_TOKEN_FILE` names
/// (not both; `none` or empty = unset). Errors never show the token: the value is
/// replaced by its length.
fn http_token(get: &impl Fn(&str) -> Option<OsString>) -> Result<Option<HttpToken>, ConfigError> {
    let hidden = |v: &str| format!("<{} characters, not shown>", v.chars().count());
    let unset = |v: &Option<OsString>| {
        v.as_ref()
            .and_then(|v| v.to_str())
            .is_some_and(|v| v.trim().is_empty() || v.trim().eq_ignore_ascii_case("none"))
    };
    let (token, file) = (get(ENV_HTTP_TOKEN), get(ENV_HTTP_TOKEN_FILE));
    let token = if unset(&token) { None } else { token };
    let file = if unset(&file) { None } else { file };
    let direct = match token {
        None => None,
        Some(v) => {
            let v = v.into_string().map_err(|_| {
                ConfigError::new(ENV_HTTP_TOKEN, "<not UTF-8, not shown>", TOKEN_FORM)
            })?;
            Some(
                HttpToken::new(&v)
                    .ok_or_else(|| ConfigError::new(ENV_HTTP_TOKEN, &hidden(&v), TOKEN_FORM))?,
            )
        }
    };
    let Some(path) = file else {
        return Ok(direct);
    };
    let shown = path.to_string_lossy().into_owned();
    if direct.is_some() {
        return Err(ConfigError::new(
            ENV_HTTP_TOKEN_FILE,
            &shown,
            TOKEN_BOTH_FORM,
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::new(
            ENV_HTTP_TOKEN_FILE,
            &format!("{shown} ({e})"),
            TOKEN_FILE_FORM,
        )
    })?;
    let token = HttpToken::new(text.trim()).ok_or_else(|| {
        ConfigError::new(
            ENV_HTTP_TOKEN_FILE,
            &format!("{shown} (holding {})", hidden(text.trim())),
            TOKEN_FILE_FORM,
        )
    })?;
    Ok(Some(token))
}

/// `none`/empty -> empty; `a,b` -> the names, deduplicated; an empty item -> `None`.
fn parse_names(v: &str) -> Option<Vec<String>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut out: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item.is_empty() || item.contains('=') {
            return None;
        }
        if !out.iter().any(|n| n == item) {
            out.push(item.to_string());
        }
    }
    Some(out)
}

/// `none`/empty -> empty; `a=200ms,b=1s` -> pairs (a later bound for a name wins); a
/// missing name, `=` or a bad or zero duration -> `None`.
fn parse_latency(v: &str) -> Option<Vec<(String, Duration)>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut out: Vec<(String, Duration)> = Vec::new();
    for item in v.split(',') {
        let (name, d) = item.split_once('=')?;
        let name = name.trim();
        let d = parse_duration(d).filter(|d| !d.is_zero())?;
        if name.is_empty() {
            return None;
        }
        out.retain(|(n, _)| n != name);
        out.push((name.to_string(), d));
    }
    Some(out)
}

/// `off`/empty -> `Some(None)`; `80`, `150%` -> `Some(Some(n))` for n >= 1; else `None`.
fn parse_percent(v: &str) -> Option<Option<u32>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let num = v.strip_suffix('%').unwrap_or(v).trim_end();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match num.parse::<u32>() {
        Ok(n) if n >= 1 => Some(Some(n)),
        _ => None,
    }
}

/// `none`/empty -> empty list; `a,b` -> the alert kinds named, deduplicated; an unknown
/// or empty item -> `None`.
pub(super) fn parse_kinds(v: &str) -> Option<Vec<AlertKind>> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut kinds: Vec<AlertKind> = Vec::new();
    for item in v.split(',').map(str::trim) {
        let kind = AlertKind::from_name(item)?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Some(kinds)
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

/// `word` (case-insensitive) -> `Some(None)`; a byte count >= 1 -> `Some(Some(n))`.
fn bytes_or(v: &str, word: &str) -> Option<Option<u64>> {
    if v.trim().eq_ignore_ascii_case(word) {
        return Some(None);
    }
    match parse_bytes(v) {
        Some(n) if n >= 1 => Some(Some(n)),
        _ => None,
    }
}

/// Parses `250ms`, `1s`, `5m`, `2h` (a unit is required).
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(ms).map(Duration::from_millis)
}
