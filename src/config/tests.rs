//! Tests of the configuration parser.
use super::parse::{from_lookup, parse_bytes, parse_duration, parse_kinds, ON_FORM};
use super::*;
use std::collections::HashMap;
use std::ffi::OsString;

fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let m: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    from_lookup(|k| m.get(k).cloned())
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
fn durations_and_detector_settings() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
    assert_eq!(parse_duration(" 5m "), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
    for bad in ["", "5", "s", "1.5s", "-1s", "3d", "99999999999999999999h"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
    let c = parse(&[
        (ENV_INTERVAL, "200ms"),
        (ENV_LEAK_WINDOW, "5s"),
        (ENV_LEAK_MIN_BYTES, "64KiB"),
        (ENV_HEAP_LIMIT, "2GiB"),
        (ENV_COOLDOWN, "0s"),
        (ENV_MAX_DUMPS, "3"),
    ])
    .unwrap();
    assert_eq!(c.interval, Duration::from_millis(200));
    assert_eq!(c.leak_window, Duration::from_secs(5));
    assert_eq!(c.leak_min_bytes, Some(64 << 10));
    assert_eq!(c.heap_limit, Some(2 << 30));
    assert_eq!(c.cooldown, Duration::ZERO);
    assert_eq!(c.max_dumps, 3);
    for (var, bad) in [
        (ENV_INTERVAL, "0ms"),
        (ENV_INTERVAL, "1"),
        (ENV_LEAK_WINDOW, "soon"),
        (ENV_LEAK_MIN_BYTES, "0"),
        (ENV_HEAP_LIMIT, "lots"),
        (ENV_COOLDOWN, "5 minutes"),
        (ENV_MAX_DUMPS, "-1"),
    ] {
        let e = parse(&[(var, bad)]).unwrap_err();
        assert_eq!((e.var(), e.value()), (var, bad));
        assert!(!e.to_string().contains('\n'));
    }
    assert_eq!(parse(&[(ENV_HEAP_LIMIT, "None")]).unwrap().heap_limit, None);
    assert!(parse(&[]).unwrap().monitor);
    assert!(!parse(&[(ENV_INTERVAL, "off")]).unwrap().monitor);
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
fn cpu_variables() {
    let c = parse(&[
        (ENV_CPU_HZ, "250"),
        (ENV_CPU_SECONDS, "0"),
        (ENV_CPU_LIMIT, "150%"),
        (ENV_CPU_ON, "memory_leak, heap_limit,memory_leak"),
    ])
    .unwrap();
    assert_eq!(c.cpu_hz, 250);
    assert_eq!(c.cpu_seconds, 0);
    assert_eq!(c.cpu_limit, Some(150));
    assert_eq!(c.cpu_on, vec![AlertKind::MemoryLeak, AlertKind::HeapLimit]);
    assert_eq!(parse(&[(ENV_CPU_LIMIT, "80")]).unwrap().cpu_limit, Some(80));
    assert_eq!(parse(&[(ENV_CPU_LIMIT, "OFF")]).unwrap().cpu_limit, None);
    assert!(parse(&[(ENV_CPU_ON, "none")]).unwrap().cpu_on.is_empty());
    for (var, bad) in [
        (ENV_CPU_HZ, "0"),
        (ENV_CPU_HZ, "99.5"),
        (ENV_CPU_HZ, "10001"),
        (ENV_CPU_HZ, "fast"),
        (ENV_CPU_SECONDS, "-1"),
        (ENV_CPU_SECONDS, "10s"),
        (ENV_CPU_ON, "memory_leek"),
        (ENV_CPU_ON, "memory_leak,"),
        (ENV_CPU_SECONDS, "86401"),
        (ENV_CPU_LIMIT, "0"),
        (ENV_CPU_LIMIT, "80.5"),
        (ENV_CPU_LIMIT, "%"),
        (ENV_CPU_LIMIT, "-5"),
        (ENV_CPU_ON, "memory_leak,"),
        (ENV_CPU_ON, "leak"),
        (ENV_CPU_ON, "Memory_Leak"),
    ] {
        let e = parse(&[(var, bad)]).unwrap_err();
        assert_eq!((e.var(), e.value()), (var, bad));
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn task_and_span_variables() {
    let c = parse(&[
        (ENV_TASK_SPANS, "job, request,job"),
        (ENV_TASK_LIMIT, "5000"),
        (ENV_SPAN_LATENCY, "request=200ms, job=1s,request=300ms"),
    ])
    .unwrap();
    assert_eq!(c.task_spans, vec!["job", "request"]);
    assert_eq!(c.task_limit, Some(5000));
    assert_eq!(
        c.span_latency,
        vec![
            ("job".to_string(), Duration::from_secs(1)),
            ("request".to_string(), Duration::from_millis(300))
        ]
    );
    let c = Config::new()
        .task_span("job")
        .task_limit(Some(3))
        .span_latency("a", Duration::from_secs(1))
        .span_latency("a", Duration::from_secs(2));
    assert_eq!(
        c.span_latency,
        vec![("a".to_string(), Duration::from_secs(2))]
    );
    assert_eq!(c.task_spans, vec!["job"]);
    assert!(
        !Config::new().tokio_spans,
        "tokio's spans hidden by default"
    );
    assert!(parse(&[(ENV_TOKIO_SPANS, "show")]).unwrap().tokio_spans);
    assert!(!parse(&[(ENV_TOKIO_SPANS, "HIDE")]).unwrap().tokio_spans);
    assert!(Config::new().tokio_spans(true).tokio_spans);
    for (var, bad) in [
        (ENV_TASK_SPANS, "a,,b"),
        (ENV_TASK_SPANS, "a=1s"),
        (ENV_TASK_LIMIT, "0"),
        (ENV_TASK_LIMIT, "many"),
        (ENV_SPAN_LATENCY, "request"),
        (ENV_SPAN_LATENCY, "request=200"),
        (ENV_SPAN_LATENCY, "=1s"),
        (ENV_SPAN_LATENCY, "request=0ms"),
        (ENV_SPAN_LATENCY, "a=1s,"),
        (ENV_TOKIO_SPANS, "yes"),
        (ENV_TOKIO_SPANS, ""),
    ] {
        let e = parse(&[(var, bad)]).unwrap_err();
        assert_eq!((e.var(), e.value()), (var, bad));
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn which_alerts_capture_cpu() {
    let c = Config::new();
    assert!(c.captures_cpu_on(AlertKind::SpanLatency) && c.captures_cpu_on(AlertKind::CpuLimit));
    assert!(!c.captures_cpu_on(AlertKind::MemoryLeak));
    let c = c.cpu_on(AlertKind::MemoryLeak);
    assert!(c.captures_cpu_on(AlertKind::MemoryLeak));
    assert!(!c.cpu_seconds(0).captures_cpu_on(AlertKind::SpanLatency));
}

#[test]
fn cpu_on_names_every_alert_kind_and_nothing_else() {
    for &kind in AlertKind::ALL {
        assert_eq!(parse_kinds(kind.as_str()), Some(vec![kind]));
        assert!(
            ON_FORM.contains(kind.as_str()),
            "{kind} missing from the accepted form"
        );
    }
    assert_eq!(
        parse_kinds(" task_leak,span_latency ,task_leak"),
        Some(vec![AlertKind::TaskLeak, AlertKind::SpanLatency])
    );
    for bad in [
        "memory-leak",
        "MemoryLeak",
        "leak",
        "memory_leak,,heap_limit",
    ] {
        assert_eq!(parse_kinds(bad), None, "{bad}");
    }
    let e = parse(&[(ENV_CPU_ON, "heap_limt")]).unwrap_err();
    assert!(
        e.to_string().contains("memory_leak, heap_limit, task_leak"),
        "the error lists the kinds: {e}"
    );
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

#[test]
fn formats_and_http() {
    let c = parse(&[(ENV_FORMATS, "dhat,pprof"), (ENV_HTTP, "6060")]).unwrap();
    assert_eq!(c.formats, vec![Format::Pprof, Format::Dhat]);
    assert_eq!(c.http, Some("127.0.0.1:6060".parse().unwrap()));
    for (v, want) in [
        ("localhost:0", Some("127.0.0.1:0")),
        ("[::1]:6060", Some("[::1]:6060")),
        ("0.0.0.0:6060", Some("0.0.0.0:6060")),
        ("OFF", None),
    ] {
        let got = parse(&[(ENV_HTTP, v)]).unwrap().http;
        assert_eq!(got, want.map(|w| w.parse().unwrap()), "{v}");
    }
    assert!(parse(&[(ENV_FORMATS, "none")]).unwrap().formats.is_empty());
    for (var, bad) in [
        (ENV_FORMATS, "svg,png"),
        (ENV_FORMATS, ""),
        (ENV_HTTP, "6060x"),
        (ENV_HTTP, "example.com:6060"),
        (ENV_HTTP, ":6060"),
        (ENV_HTTP, "127.0.0.1"),
        (ENV_HTTP, "70000"),
    ] {
        let e = parse(&[(var, bad)]).unwrap_err();
        assert_eq!((e.var(), e.value()), (var, bad));
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn memory_budget() {
    assert_eq!(parse(&[]).unwrap().memory_budget, DEFAULT_MEMORY_BUDGET);
    assert_eq!(
        parse(&[(ENV_MEMORY_BUDGET, "64MiB")])
            .unwrap()
            .memory_budget,
        64 << 20
    );
    for bad in ["1KiB", "0", "lots", ""] {
        let e = parse(&[(ENV_MEMORY_BUDGET, bad)]).unwrap_err();
        assert_eq!((e.var(), e.value()), (ENV_MEMORY_BUDGET, bad));
        assert!(e.to_string().contains(">= 1MiB"), "{e}");
    }
    assert_eq!(
        Config::new().memory_budget(1).memory_budget,
        MIN_MEMORY_BUDGET
    );
}

#[test]
fn http_token_from_the_variable_or_a_file() {
    let want = HttpToken::new("s3cr3t-T0ken").unwrap();
    let c = parse(&[(ENV_HTTP_TOKEN, "s3cr3t-T0ken")]).unwrap();
    assert_eq!(c.http_token, Some(want.clone()));
    for unset in ["none", "", " NONE "] {
        assert_eq!(parse(&[(ENV_HTTP_TOKEN, unset)]).unwrap().http_token, None);
        assert_eq!(
            parse(&[(ENV_HTTP_TOKEN_FILE, unset)]).unwrap().http_token,
            None
        );
    }
    // A file: surrounding whitespace (a trailing newline) is not part of the token.
    let dir = std::env::temp_dir().join(format!("leakscope-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "  s3cr3t-T0ken\n").unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(
        parse(&[(ENV_HTTP_TOKEN_FILE, path)]).unwrap().http_token,
        Some(want)
    );
    // Errors name the variable and never show the token.
    std::fs::write(&file, "not a token\n").unwrap();
    for (vars, var, says) in [
        (
            vec![(ENV_HTTP_TOKEN, "has space")],
            ENV_HTTP_TOKEN,
            "bearer token",
        ),
        (vec![(ENV_HTTP_TOKEN, "é")], ENV_HTTP_TOKEN, "bearer token"),
        (
            vec![(ENV_HTTP_TOKEN_FILE, path)],
            ENV_HTTP_TOKEN_FILE,
            "readable file",
        ),
        (
            vec![(ENV_HTTP_TOKEN_FILE, "/nonexistent/leakscope-token")],
            ENV_HTTP_TOKEN_FILE,
            "readable file",
        ),
        (
            vec![(ENV_HTTP_TOKEN, "abc"), (ENV_HTTP_TOKEN_FILE, path)],
            ENV_HTTP_TOKEN_FILE,
            "not both",
        ),
    ] {
        let e = parse(&vars).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.var(), var, "{text}");
        assert!(text.contains(says), "{text}");
        assert!(!text.contains('\n'), "{text}");
        for secret in ["has space", "not a token", "é"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
