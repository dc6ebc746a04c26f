//! The endpoints: which path serves what, and the checking of their parameters. Cheap
//! answers are built at once; a heap profile (or the report, built from one) and a CPU
//! profile are jobs the server runs on threads of their own, one of each at a time.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::request::Request;
use super::{auth, metrics, Response};
use crate::context::Context;
use crate::readings::unix_nanos;
use crate::write::layer_pprof::{span_pprof_gz, task_pprof_gz, LayerFrame};
use crate::write::pprof::{heap_pprof_gz, DefaultSample};
use crate::write::report::Report;

/// Longest CPU profile `/debug/pprof/profile` takes.
pub(crate) const MAX_CPU_SECONDS: u64 = 300;
/// `seconds` when the request gives none (Go's default).
pub(crate) const DEFAULT_CPU_SECONDS: u64 = 30;

const PPROF_TYPE: &str = "application/octet-stream";

const INDEX: &str =
    "leakscope endpoints (read-only, except that one CPU profile can run at a time):
/debug/pprof/heap              live heap, gzipped pprof (default sample type inuse_space)
/debug/pprof/allocs            the same profile, default sample type alloc_space
/debug/pprof/profile?seconds=N CPU profile of N seconds (1 to 300, default 30), gzipped pprof
/debug/pprof/goroutine         live tasks by spawn site, gzipped pprof (needs leakscope::layer())
/debug/pprof/spans             self time by span stack, gzipped pprof (needs leakscope::layer())
/metrics                       Prometheus text format
/debug/leakscope/report        the JSON report, now";

/// A heap profile's answer, built on a job thread.
pub(crate) type HeapJob = Box<dyn FnOnce() -> Response + Send>;

/// How a request is answered.
pub(crate) enum Route {
    /// At once.
    Now(Response),
    /// By building a heap profile (`/debug/pprof/heap`, `/allocs`, the report).
    Heap(HeapJob),
    /// By a CPU profile of `seconds`.
    Cpu { seconds: u64, head_only: bool },
}

/// How `req` is answered from the session of `ctx`: 401 without the token when one is
/// configured, 405 for anything but `GET` and `HEAD`, else the endpoint's answer.
pub(crate) fn handle(req: &Request, ctx: &Context) -> Route {
    if let Some(token) = &ctx.config.http_token {
        if !auth::authorized(req, token) {
            return Route::Now(auth::unauthorized(req));
        }
    }
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        let mut r = Response::text(
            405,
            format!(
                "method {} not allowed: the endpoints are read-only (GET, HEAD)",
                req.method
            ),
        );
        r.headers.push(("Allow", "GET, HEAD".to_string()));
        return Route::Now(r);
    }
    match route(req, head_only, ctx) {
        Route::Now(mut r) => {
            r.head_only = head_only;
            Route::Now(r)
        }
        Route::Heap(job) => Route::Heap(Box::new(move || {
            let mut r = job();
            r.head_only = head_only;
            r
        })),
        cpu => cpu,
    }
}

fn route(req: &Request, head_only: bool, ctx: &Context) -> Route {
    let now = Route::Now;
    match req.path.as_str() {
        "/" | "/debug/pprof" | "/debug/pprof/" => now(match no_params(req, &[]) {
            Ok(()) => Response::text(200, INDEX),
            Err(r) => r,
        }),
        "/debug/pprof/heap" => heap(req, DefaultSample::InuseSpace),
        "/debug/pprof/allocs" => heap(req, DefaultSample::AllocSpace),
        "/debug/pprof/profile" => cpu(req, head_only),
        "/debug/pprof/goroutine" => now(layer_profile(req, "task", || {
            task_pprof_gz(&crate::layer::task_stats(), unix_nanos())
        })),
        "/debug/pprof/spans" => now(layer_profile(req, "span", || {
            span_pprof_gz(&span_paths(), unix_nanos())
        })),
        "/metrics" => now(match no_params(req, &[]) {
            Ok(()) => Response::bytes(metrics::CONTENT_TYPE, metrics::render(ctx).into_bytes()),
            Err(r) => r,
        }),
        "/debug/leakscope/report" => match no_params(req, &[]) {
            Ok(()) => Route::Heap(Box::new(report)),
            Err(r) => now(r),
        },
        other => now(Response::text(
            404,
            format!("no endpoint {other:?}; see / for the list"),
        )),
    }
}

/// 400 naming the accepted parameters if `req` has any other (or one twice).
fn no_params(req: &Request, accepted: &[&str]) -> Result<(), Response> {
    for (i, (k, _)) in req.query.iter().enumerate() {
        if !accepted.contains(&k.as_str()) {
            let list = if accepted.is_empty() {
                "none".to_string()
            } else {
                accepted.join(", ")
            };
            return Err(Response::text(
                400,
                format!("unknown parameter {k:?} for {}; accepted: {list}", req.path),
            ));
        }
        if req.query[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(Response::text(400, format!("parameter {k:?} given twice")));
        }
    }
    Ok(())
}

fn param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn heap(req: &Request, default: DefaultSample) -> Route {
    // `gc` is what Go's handler takes to collect garbage first: nothing to do here.
    if let Err(r) = no_params(req, &["gc", "debug"]) {
        return Route::Now(r);
    }
    if let Some(v) = param(req, "gc").filter(|v| !matches!(*v, "0" | "1")) {
        return Route::Now(Response::text(400, format!("gc={v:?}: expected 0 or 1")));
    }
    if let Some(v) = param(req, "debug").filter(|v| *v != "0") {
        return Route::Now(Response::text(
            400,
            format!("debug={v:?}: only debug=0 (the protobuf) is served"),
        ));
    }
    // Built and encoded in one turn: one heap profile in memory however many scrapes.
    Route::Heap(Box::new(move || {
        match crate::profile::with_profile_own(|p| heap_pprof_gz(p, default)) {
            Ok(gz) => Response::bytes(PPROF_TYPE, gz),
            Err(e) => Response::text(500, format!("cannot encode the heap profile: {e}")),
        }
    }))
}

fn cpu(req: &Request, head_only: bool) -> Route {
    if let Err(r) = no_params(req, &["seconds"]) {
        return Route::Now(r);
    }
    let seconds = match param(req, "seconds") {
        None => DEFAULT_CPU_SECONDS,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_CPU_SECONDS).contains(&n) && !v.starts_with('+') => n,
            _ => {
                return Route::Now(Response::text(
                    400,
                    format!(
                    "seconds={v:?}: expected a whole number of seconds from 1 to {MAX_CPU_SECONDS}"
                ),
                ))
            }
        },
    };
    Route::Cpu { seconds, head_only }
}

/// A CPU profile of `seconds` for the session of `ctx` (on a job thread); `wait` sleeps
/// for its duration, or less when the server stops.
pub(crate) fn cpu_profile(
    ctx: &Arc<Context>,
    wait: &dyn Fn(Duration),
    seconds: u64,
    head_only: bool,
) -> Response {
    let mut r = match crate::cpu::cpu_pprof_gz(ctx, wait, Duration::from_secs(seconds)) {
        Ok(gz) => Response::bytes(PPROF_TYPE, gz),
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
            let mut r = Response::text(503, e.to_string());
            r.headers.push(("Retry-After", seconds.to_string()));
            r
        }
        Err(e) => Response::text(500, format!("CPU profile failed: {e}")),
    };
    r.head_only = head_only;
    r
}

fn report() -> Response {
    let r = crate::profile::with_profile_own(|p| {
        Report::new("snapshot", p, &[], crate::readings::moment())
    });
    let mut body = Vec::new();
    match r.write(&mut body) {
        Ok(()) => Response::bytes("application/json", body),
        Err(e) => Response::text(500, format!("cannot encode the report: {e}")),
    }
}

/// A profile of the tracing layer's figures (`what`: "task" or "span"); `debug=0` only.
fn layer_profile(req: &Request, what: &str, gz: impl FnOnce() -> io::Result<Vec<u8>>) -> Response {
    if let Err(r) = no_params(req, &["debug"]) {
        return r;
    }
    if let Some(v) = param(req, "debug").filter(|v| *v != "0") {
        return Response::text(
            400,
            format!("debug={v:?}: only debug=0 (the protobuf) is served"),
        );
    }
    match gz() {
        Ok(gz) => Response::bytes(PPROF_TYPE, gz),
        Err(e) => Response::text(500, format!("cannot encode the {what} profile: {e}")),
    }
}

/// The tracing layer's span paths with their self times (ns), as frames, outermost
/// first; paths with no time left out.
fn span_paths() -> Vec<(Vec<LayerFrame>, u64)> {
    crate::layer::path_self_times()
        .into_iter()
        .filter(|&(_, ns)| ns > 0)
        .map(|(path, ns)| {
            let frames = crate::layer::span_frames(path)
                .into_iter()
                .map(|f| LayerFrame {
                    function: f.function.to_string(),
                    file: f.file.as_deref().unwrap_or("").to_string(),
                    line: f.line.map_or(0, i64::from),
                })
                .collect();
            (frames, ns)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(route: Route) -> Response {
        match route {
            Route::Now(r) => r,
            Route::Heap(_) => panic!("a heap profile job"),
            Route::Cpu { .. } => panic!("a CPU profile job"),
        }
    }

    fn request(raw: &str) -> Request {
        match Request::parse(raw.as_bytes()) {
            super::super::request::Head::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn get_with(target: &str, ctx: &Context) -> Route {
        handle(&request(&format!("GET {target} HTTP/1.1\r\n\r\n")), ctx)
    }

    fn get(target: &str) -> Response {
        answer(get_with(target, &Context::new(crate::Config::new())))
    }

    fn body(r: &Response) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    #[test]
    fn bad_parameters_are_400_with_a_reason() {
        for (target, says) in [
            ("/debug/pprof/profile?seconds=0", "from 1 to 300"),
            ("/debug/pprof/profile?seconds=301", "from 1 to 300"),
            ("/debug/pprof/profile?seconds=-1", "from 1 to 300"),
            ("/debug/pprof/profile?seconds=1.5", "from 1 to 300"),
            ("/debug/pprof/profile?seconds=", "from 1 to 300"),
            ("/debug/pprof/profile?seconds=+5", "from 1 to 300"),
            ("/debug/pprof/profile?secs=5", "unknown parameter \"secs\""),
            ("/debug/pprof/profile?seconds=1&seconds=2", "given twice"),
            (
                "/debug/pprof/heap?seconds=5",
                "unknown parameter \"seconds\"",
            ),
            ("/debug/pprof/heap?gc=2", "expected 0 or 1"),
            ("/debug/pprof/heap?debug=1", "only debug=0"),
            ("/debug/pprof/goroutine?debug=2", "only debug=0"),
            ("/debug/pprof/spans?seconds=1", "accepted: debug"),
            ("/metrics?x=1", "accepted: none"),
            ("/debug/leakscope/report?x", "accepted: none"),
        ] {
            let r = get(target);
            assert_eq!(r.status, 400, "{target}: {}", body(&r));
            assert!(body(&r).contains(says), "{target}: {}", body(&r));
        }
    }

    #[test]
    fn other_paths_and_methods() {
        assert_eq!(get("/nope").status, 404);
        for path in ["/debug/pprof/goroutine", "/debug/pprof/spans"] {
            let r = get(path);
            assert_eq!(r.status, 200, "{path}: {}", body(&r));
            assert_eq!(&r.body[..2], &[0x1f, 0x8b], "{path}: gzipped");
        }
        assert_eq!(get("/").status, 200);
        let ctx = Context::new(crate::Config::new());
        let r = answer(handle(
            &request("POST /debug/pprof/heap HTTP/1.1\r\n\r\n"),
            &ctx,
        ));
        assert_eq!(r.status, 405);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "Allow" && v == "GET, HEAD"));
        // Heap profiles and CPU profiles are jobs; HEAD answers carry no body.
        for target in [
            "/debug/pprof/heap",
            "/debug/pprof/allocs?gc=1",
            "/debug/leakscope/report",
        ] {
            assert!(matches!(get_with(target, &ctx), Route::Heap(_)), "{target}");
        }
        assert!(matches!(
            get_with("/debug/pprof/profile?seconds=7", &ctx),
            Route::Cpu {
                seconds: 7,
                head_only: false
            }
        ));
        let r = answer(handle(&request("HEAD /metrics HTTP/1.1\r\n\r\n"), &ctx));
        assert!(r.head_only && r.status == 200);
    }

    #[test]
    fn a_token_guards_every_endpoint() {
        let token = crate::config::HttpToken::new("t0ken").unwrap();
        let ctx = Context::new(crate::Config::new().http_token(Some(token)));
        for target in [
            "/",
            "/metrics",
            "/debug/pprof/heap",
            "/debug/pprof/profile",
            "/nope",
        ] {
            for auth in [
                "",
                "Authorization: Bearer wrong\r\n",
                "Authorization: t0ken\r\n",
            ] {
                let raw = format!("GET {target} HTTP/1.1\r\n{auth}\r\n");
                let r = answer(handle(&request(&raw), &ctx));
                assert_eq!(r.status, 401, "{raw}");
            }
        }
        let ok = request("GET /metrics HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n");
        assert_eq!(answer(handle(&ok, &ctx)).status, 200);
        let post = request("POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(answer(handle(&post, &ctx)).status, 401, "before the method");
    }
}
