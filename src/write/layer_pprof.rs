//! The tracing layer's figures as pprof protobufs (`.pb.gz`), built from
//! [`task_stats`](crate::task_stats) and the span-path self times:
//!
//! * the **task profile**: live tasks by spawn site, like Go's goroutine profile (sample
//!   type `goroutine/count`, which `go tool pprof` treats as one); one sample per spawn
//!   site with live tasks, its one frame named `task <name> at <file:line>`;
//! * the **span profile**: time by span stack, sample type `busy/nanoseconds` (self time
//!   of each span path, outermost span at the root; estimated from the timed entries,
//!   each weighted by its sampling interval when recorded).
//!
//! No addresses: each frame is a location with one line (function = the name above,
//! file and line of the spawn or the span's callsite) and no mapping. Same rules as the
//! heap profile: ids sequential from 1, `string_table[0] = ""`, no `-` in type names.

use std::collections::HashMap;
use std::io;

use pprof::protos::{Function, Line, Location, Message, Profile, Sample, ValueType};

use super::gzip::write_gzip;
use super::pprof::{to_i64, Strings};
use crate::layer::TaskStats;

/// One frame: function name, file, line (0 = unknown).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LayerFrame {
    pub(crate) function: String,
    pub(crate) file: String,
    pub(crate) line: i64,
}

/// One sample: frames innermost first, one value per sample type.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) frames: Vec<LayerFrame>,
    pub(crate) values: Vec<i64>,
}

/// The protobuf of `rows` with sample types `types` (`(type, unit)`, the first is the
/// period type and the default).
fn build(types: &[(&str, &str)], rows: &[Row], comment: &str, time_nanos: i64) -> Profile {
    let mut st = Strings::new();
    let sample_type: Vec<ValueType> = types
        .iter()
        .map(|(t, u)| ValueType {
            ty: st.get(t),
            unit: st.get(u),
        })
        .collect();
    let period_type = sample_type.first().cloned();
    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: HashMap<(i64, i64), u64> = HashMap::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_ids: HashMap<&LayerFrame, u64> = HashMap::new();
    let mut samples = Vec::with_capacity(rows.len());
    for r in rows {
        let mut ids = Vec::with_capacity(r.frames.len());
        for f in &r.frames {
            let id = match location_ids.get(f) {
                Some(&id) => id,
                None => {
                    let key = (st.get(&f.function), st.get(&f.file));
                    let function_id = *function_ids.entry(key).or_insert_with(|| {
                        functions.push(Function {
                            id: functions.len() as u64 + 1,
                            name: key.0,
                            system_name: key.0,
                            filename: key.1,
                            start_line: 0,
                        });
                        functions.len() as u64
                    });
                    let id = locations.len() as u64 + 1;
                    locations.push(Location {
                        id,
                        mapping_id: 0,
                        address: 0,
                        line: vec![Line {
                            function_id,
                            line: f.line,
                        }],
                        is_folded: false,
                    });
                    location_ids.insert(f, id);
                    id
                }
            };
            ids.push(id);
        }
        samples.push(Sample {
            location_id: ids,
            value: r.values.clone(),
            label: Vec::new(),
        });
    }
    let comment = vec![st.get(comment)];
    let default_sample_type = sample_type.first().map_or(0, |t| t.ty);
    Profile {
        sample_type,
        sample: samples,
        mapping: Vec::new(),
        location: locations,
        function: functions,
        string_table: st.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos,
        duration_nanos: 0,
        period_type,
        period: 1,
        comment,
        default_sample_type,
    }
}

/// `file:line` split into file and line (0 when the site has no line).
fn split_site(site: &str) -> (&str, i64) {
    match site.rsplit_once(':') {
        Some((file, line)) if !file.is_empty() => match line.parse::<i64>() {
            Ok(n) => (file, n),
            Err(_) => (site, 0),
        },
        _ => (site, 0),
    }
}

/// The task profile of `tasks`: one sample per spawn site with live tasks.
pub(crate) fn task_profile(tasks: &[TaskStats], time_nanos: i64) -> Profile {
    let rows: Vec<Row> = tasks
        .iter()
        .filter(|t| t.live > 0)
        .map(|t| {
            let (file, line) = split_site(&t.site);
            Row {
                frames: vec![LayerFrame {
                    function: format!("task {} at {}", t.name, t.site),
                    file: file.to_string(),
                    line,
                }],
                values: vec![to_i64(t.live)],
            }
        })
        .collect();
    let comment = if tasks.is_empty() {
        "leakscope task profile: no task spans seen (install leakscope::layer(); tokio needs --cfg tokio_unstable and its tracing feature)"
    } else {
        "leakscope task profile: live tasks by spawn site"
    };
    build(&[("goroutine", "count")], &rows, comment, time_nanos)
}

/// The span profile of `paths`: `(frames innermost first, self ns)` per span path, the
/// self times as recorded (already estimates: each timed entry weighted by its sampling
/// interval).
pub(crate) fn span_profile(paths: &[(Vec<LayerFrame>, u64)], time_nanos: i64) -> Profile {
    let rows: Vec<Row> = paths
        .iter()
        .filter(|(frames, ns)| *ns > 0 && !frames.is_empty())
        .map(|(frames, ns)| Row {
            frames: frames.clone(),
            values: vec![to_i64(*ns)],
        })
        .collect();
    let comment = "leakscope span profile: self time by span stack since the layer was installed, estimated from the timed entries (each weighted by its sampling interval, 1 to 1024)";
    build(&[("busy", "nanoseconds")], &rows, comment, time_nanos)
}

fn gz(p: &Profile) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_gzip(&p.encode_to_vec(), &mut out)?;
    Ok(out)
}

/// The gzipped task profile of `tasks` at `time_nanos` (since the Unix epoch).
pub(crate) fn task_pprof_gz(tasks: &[TaskStats], time_nanos: i64) -> io::Result<Vec<u8>> {
    gz(&task_profile(tasks, time_nanos))
}

/// The gzipped span profile of `paths` (frames, self time in ns) at `time_nanos`.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn span_pprof_gz(
    paths: &[(Vec<LayerFrame>, u64)],
    time_nanos: i64,
) -> io::Result<Vec<u8>> {
    gz(&span_profile(paths, time_nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(site: &str, name: &str, live: u64) -> TaskStats {
        TaskStats {
            site: site.to_string(),
            name: name.to_string(),
            function: None,
            live,
            peak: live,
            spawned: live + 1,
            closed: 1,
        }
    }

    fn frame(name: &str, line: i64) -> LayerFrame {
        LayerFrame {
            function: name.to_string(),
            file: "src/app.rs".to_string(),
            line,
        }
    }

    fn check_ids(p: &Profile) {
        assert_eq!(p.string_table[0], "");
        for (i, l) in p.location.iter().enumerate() {
            assert_eq!(l.id, i as u64 + 1);
        }
        for (i, f) in p.function.iter().enumerate() {
            assert_eq!(f.id, i as u64 + 1);
        }
        for t in &p.sample_type {
            assert!(!p.string_table[t.ty as usize].contains('-'));
        }
    }

    #[test]
    fn task_profile_has_one_sample_per_live_site() {
        let p = task_profile(
            &[
                task("src/a.rs:10", "worker", 3),
                task("src/b.rs:20", "runtime.spawn", 0),
                task("[other]", "[other]", 2),
            ],
            7,
        );
        check_ids(&p);
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(p.sample_type[0].ty), "goroutine");
        assert_eq!(s(p.sample_type[0].unit), "count");
        assert_eq!(
            p.sample.len(),
            2,
            "the site without live tasks has no sample"
        );
        assert_eq!(p.sample[0].value, vec![3]);
        assert_eq!(p.sample[1].value, vec![2]);
        let f = &p.function[0];
        assert_eq!(s(f.name), "task worker at src/a.rs:10");
        assert_eq!(s(f.filename), "src/a.rs");
        assert_eq!(p.location[0].line[0].line, 10);
        assert_eq!(s(p.function[1].filename), "[other]");
        assert_eq!(p.location[1].line[0].line, 0);
    }

    #[test]
    fn span_profile_keeps_self_times_and_shares_frames() {
        let outer = frame("request", 5);
        let p = span_profile(
            &[
                (vec![frame("db", 9), outer.clone()], 100),
                (vec![outer.clone()], 10),
                (vec![frame("idle", 1)], 0),
            ],
            7,
        );
        check_ids(&p);
        assert_eq!(p.sample.len(), 2);
        assert_eq!(
            p.sample[0].value,
            vec![100],
            "already weighted when recorded"
        );
        assert_eq!(p.sample[0].location_id, vec![1, 2]);
        assert_eq!(p.sample[1].location_id, vec![2], "one location per frame");
        assert_eq!(p.location.len(), 2);
    }

    #[test]
    fn sites_split_at_the_last_colon() {
        assert_eq!(split_site("C:/x/a.rs:12"), ("C:/x/a.rs", 12));
        assert_eq!(split_site("app::worker"), ("app::worker", 0));
        assert_eq!(split_site("[other]"), ("[other]", 0));
    }
}
