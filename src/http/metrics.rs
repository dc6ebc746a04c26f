//! `/metrics`: Prometheus text exposition format 0.0.4. Cheap: exact counters, the
//! process's status file and the alert counts; nothing is symbolized.

use std::fmt::Write;

use crate::alert::raised_counts;
use crate::alloc::{samples, stacks};
use crate::context::Context;
use crate::stats::stats;

/// The content type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: name, type, help, and samples as (labels, value).
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(String, f64)>,
}

fn write_family(out: &mut String, f: &Family<'_>) {
    let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
    for (labels, v) in &f.samples {
        let _ = writeln!(out, "{}{} {}", f.name, labels, v);
    }
}

fn one(v: u64) -> Vec<(String, f64)> {
    vec![(String::new(), v as f64)]
}

/// A label value escaped as the format requires (`\\`, `\"`, `\n`).
pub(crate) fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics of the session of `ctx` now.
pub(crate) fn render(ctx: &Context) -> String {
    let s = stats();
    let process = crate::proc_status::read();
    let sample_bytes = ctx.config.sample_bytes;
    let mut families = vec![
        Family {
            name: "leakscope_heap_live_bytes",
            kind: "gauge",
            help: "Bytes in live heap blocks allocated since the session started (exact).",
            samples: one(s.live_bytes),
        },
        Family {
            name: "leakscope_heap_live_blocks",
            kind: "gauge",
            help: "Live heap blocks allocated since the session started (exact).",
            samples: one(s.live_blocks),
        },
        Family {
            name: "leakscope_heap_peak_bytes",
            kind: "gauge",
            help: "Highest live heap bytes seen in the session.",
            samples: one(s.peak_bytes),
        },
        Family {
            name: "leakscope_heap_allocated_bytes_total",
            kind: "counter",
            help: "Bytes allocated since the session started (a realloc counts its new size).",
            samples: one(s.total_bytes),
        },
        Family {
            name: "leakscope_heap_allocated_blocks_total",
            kind: "counter",
            help: "Blocks allocated since the session started.",
            samples: one(s.total_blocks),
        },
        Family {
            name: "leakscope_self_heap_bytes",
            kind: "gauge",
            help: "Bytes in leakscope's own live heap blocks (profiles, symbols, buffers), not in leakscope_heap_*.",
            samples: one(crate::stats::self_stats().live_bytes),
        },
        Family {
            name: "leakscope_self_heap_peak_bytes",
            kind: "gauge",
            help: "Highest of leakscope's own live heap bytes.",
            samples: one(crate::stats::self_stats().peak_bytes),
        },
        Family {
            name: "leakscope_sample_bytes",
            kind: "gauge",
            help: "Mean bytes between allocation samples (1 = every allocation).",
            samples: one(sample_bytes),
        },
        Family {
            name: "leakscope_dropped_samples_total",
            kind: "counter",
            help: "Allocation samples lost because a fixed table was full.",
            samples: one(stacks::dropped() + samples::dropped()),
        },
        Family {
            name: "leakscope_alerts_total",
            kind: "counter",
            help: "Alerts raised in this process, by kind.",
            samples: raised_counts()
                .map(|(k, n)| (format!("{{kind=\"{}\"}}", k.as_str()), n as f64))
                .collect(),
        },
        Family {
            name: "leakscope_build_info",
            kind: "gauge",
            help: "leakscope's version; always 1.",
            samples: vec![(
                format!(
                    "{{version=\"{}\"}}",
                    escape_label(env!("CARGO_PKG_VERSION"))
                ),
                1.0,
            )],
        },
    ];
    families.extend(layer_families());
    if let Some(rss) = process.rss_bytes {
        families.push(Family {
            name: "process_resident_memory_bytes",
            kind: "gauge",
            help: "Resident memory size in bytes.",
            samples: one(rss),
        });
    }
    if let Some(n) = process.threads {
        families.push(Family {
            name: "process_threads",
            kind: "gauge",
            help: "Number of OS threads in the process.",
            samples: one(n),
        });
    }
    let mut out = String::with_capacity(4096);
    for f in &families {
        write_family(&mut out, f);
    }
    out
}

/// The tracing layer's families: tasks by spawn site, and span busy times as summaries
/// (one per span name and callsite). Empty families are left out.
fn layer_families() -> Vec<Family<'static>> {
    let tasks = crate::layer::task_stats();
    let site_labels = |t: &crate::layer::TaskStats| {
        format!(
            "{{site=\"{}\",name=\"{}\"}}",
            escape_label(&t.site),
            escape_label(&t.name)
        )
    };
    let mut out = Vec::new();
    if !tasks.is_empty() {
        out.push(Family {
            name: "leakscope_tasks_live",
            kind: "gauge",
            help: "Tasks alive now (spawned, not yet dropped), by spawn site.",
            samples: tasks
                .iter()
                .map(|t| (site_labels(t), t.live as f64))
                .collect(),
        });
        out.push(Family {
            name: "leakscope_tasks_spawned_total",
            kind: "counter",
            help: "Tasks spawned, by spawn site.",
            samples: tasks
                .iter()
                .map(|t| (site_labels(t), t.spawned as f64))
                .collect(),
        });
    }
    let spans = crate::layer::span_stats();
    let mut busy = Vec::new();
    for s in spans.iter().filter(|s| s.entries > 0) {
        let base = format!(
            "name=\"{}\",callsite=\"{}\"",
            escape_label(&s.name),
            escape_label(s.callsite.as_deref().unwrap_or(""))
        );
        for (q, d) in [
            ("0.5", s.busy_p50),
            ("0.95", s.busy_p95),
            ("0.99", s.busy_p99),
        ] {
            busy.push((format!("{{{base},quantile=\"{q}\"}}"), d.as_secs_f64()));
        }
        // `_sum` and `_count` over the same population: all entries, estimated from the
        // timed ones weighted by their sampling interval (`busy_total`, `entries`).
        busy.push((format!("_sum{{{base}}}"), s.busy_total.as_secs_f64()));
        busy.push((format!("_count{{{base}}}"), s.entries as f64));
    }
    if !busy.is_empty() {
        out.push(Family {
            name: "leakscope_span_busy_seconds",
            kind: "summary",
            help: "Time per span entry (enter to exit; a tokio task's poll), estimated from the timed entries weighted by their sampling interval (see the crate docs).",
            samples: busy,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_family_has_help_type_and_a_sample() {
        let text = render(&Context::new(crate::Config::new()));
        for name in [
            "leakscope_heap_live_bytes",
            "leakscope_heap_allocated_bytes_total",
            "leakscope_alerts_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{text}");
            assert!(text.contains(&format!("\n{name}")), "{text}");
        }
        assert!(text.contains("leakscope_alerts_total{kind=\"memory_leak\"} "));
        assert!(text.ends_with('\n'));
    }
}
