//! Heap profiles as pprof protobufs (`.pb.gz`): what `go tool pprof`, Parca and Grafana
//! Pyroscope read.
//!
//! Sample types `alloc_objects/count`, `alloc_space/bytes`, `inuse_objects/count`,
//! `inuse_space/bytes` (Go's heap profile; names without `-` for Pyroscope), one sample
//! per distinct trimmed address stack with the unbiased estimates the flamegraph shows;
//! `period_type` `space/bytes` with `period` = the mean bytes between samples. Mappings
//! come from `/proc/self/maps` with GNU build IDs, locations carry `return address - 1`
//! (the call instruction) and one `Line` per inlined frame, innermost first; ids are
//! sequential from 1 and `string_table[0]` is `""` (Parca and Pyroscope reject others).

use std::collections::HashMap;
use std::io::{self, Write};

use pprof::protos::{Function, Line, Location, Mapping, Message, Profile, Sample, ValueType};

use super::gzip::write_gzip;
use super::mappings::{executable_mappings, Mapping as ProcMapping};
use crate::profile::{Frame, HeapProfile, Pc, LEFT_OUT, UNKNOWN};

/// Which sample type a viewer shows first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DefaultSample {
    /// `inuse_space`: what is live now (`/debug/pprof/heap`, the files).
    InuseSpace,
    /// `alloc_space`: everything allocated (`/debug/pprof/allocs`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    AllocSpace,
}

/// The frame name of a stack that lost its root-side frames (as in the flamegraph).
const TRUNCATED: &str = "[truncated]";

/// Strings of a profile: index 0 is always `""`.
pub(super) struct Strings {
    pub(super) table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    pub(super) fn new() -> Strings {
        let mut s = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.get("");
        s
    }

    pub(super) fn get(&mut self, v: &str) -> i64 {
        if let Some(&i) = self.index.get(v) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(v.to_string());
        self.index.insert(v.to_string(), i);
        i
    }
}

/// A profile's mappings (the process's, from `/proc/self/maps`), ids from 1 in order.
pub(super) fn pprof_mappings(maps: &[ProcMapping], st: &mut Strings) -> Vec<Mapping> {
    maps.iter()
        .enumerate()
        .map(|(i, m)| Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.offset,
            filename: st.get(&m.path),
            build_id: m.build_id.as_deref().map_or(0, |b| st.get(b)),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        })
        .collect()
}

/// The id of the mapping of [`pprof_mappings`] that holds `addr`; 0 for none.
fn mapping_id(maps: &[ProcMapping], addr: u64) -> u64 {
    // `maps` is sorted by start and the ranges do not overlap.
    let i = maps.partition_point(|m| m.start <= addr);
    match i.checked_sub(1).map(|i| (i, &maps[i])) {
        Some((i, m)) if addr < m.limit => i as u64 + 1,
        _ => 0,
    }
}

/// A profile's function table, one entry per (name, system name, file). The system name
/// is the mangled symbol where known: a consumer that finds it equal to the name takes
/// the name for a mangled one and shortens it (`go tool pprof` shows `<T as Trait>::f`
/// as `::f`).
#[derive(Default)]
pub(super) struct Functions {
    pub(super) list: Vec<Function>,
    ids: HashMap<(i64, i64, i64), u64>,
}

impl Functions {
    /// The id of the function, added if new.
    pub(super) fn id(&mut self, st: &mut Strings, name: &str, system: &str, file: &str) -> u64 {
        let key = (st.get(name), st.get(system), st.get(file));
        let list = &mut self.list;
        *self.ids.entry(key).or_insert_with(|| {
            list.push(Function {
                id: list.len() as u64 + 1,
                name: key.0,
                system_name: key.1,
                filename: key.2,
                // Not known: the symbolizer gives the line of the call, not of the function.
                start_line: 0,
            });
            list.len() as u64
        })
    }
}

/// The line of a location for frame `f`, whose symbol the binary names `system` (the
/// mangled name) where known.
pub(super) fn line_of(
    st: &mut Strings,
    functions: &mut Functions,
    f: &Frame,
    system: Option<&str>,
) -> Line {
    Line {
        function_id: functions.id(
            st,
            &f.function,
            system.unwrap_or(&f.function),
            f.file.as_deref().unwrap_or(""),
        ),
        line: f.line.map_or(0, i64::from),
    }
}

/// A profile's location table: one location per return address, one per synthetic
/// frame name (`[unknown]`, a span, a thread's root), ids from 1 in order.
#[derive(Default)]
pub(super) struct Locations {
    pub(super) list: Vec<Location>,
    by_pc: HashMap<Pc, u64>,
    synthetic: HashMap<String, u64>,
}

impl Locations {
    /// The id of return address `pc`'s location, made the first time from its `lines`
    /// (innermost first) in the mapping of `maps` that holds it.
    pub(super) fn of_pc(
        &mut self,
        pc: &Pc,
        maps: &[ProcMapping],
        lines: impl FnOnce() -> Vec<Line>,
    ) -> u64 {
        if let Some(&id) = self.by_pc.get(pc) {
            return id;
        }
        // Return addresses point after the call; the call is the byte before.
        let address = (pc.addr as u64).saturating_sub(1);
        let id = self.push(mapping_id(maps, address), address, lines());
        self.by_pc.insert(*pc, id);
        id
    }

    /// The id of the location of a synthetic frame `name` (no address, no mapping).
    pub(super) fn synthetic(
        &mut self,
        st: &mut Strings,
        functions: &mut Functions,
        name: &str,
    ) -> u64 {
        if let Some(&id) = self.synthetic.get(name) {
            return id;
        }
        let function_id = functions.id(st, name, name, "");
        let id = self.push(
            0,
            0,
            vec![Line {
                function_id,
                line: 0,
            }],
        );
        self.synthetic.insert(name.to_string(), id);
        id
    }

    fn push(&mut self, mapping_id: u64, address: u64, line: Vec<Line>) -> u64 {
        let id = self.list.len() as u64 + 1;
        self.list.push(Location {
            id,
            mapping_id,
            address,
            line,
            is_folded: false,
        });
        id
    }
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Builds the pprof profile of `p`, with `maps` as the process's executable mappings.
pub(crate) fn heap_profile(
    p: &HeapProfile,
    maps: &[ProcMapping],
    default: DefaultSample,
    time_nanos: i64,
) -> Profile {
    let mut st = Strings::new();
    let mut vt = |ty: &str, unit: &str| ValueType {
        ty: st.get(ty),
        unit: st.get(unit),
    };
    let sample_type = vec![
        vt("alloc_objects", "count"),
        vt("alloc_space", "bytes"),
        vt("inuse_objects", "count"),
        vt("inuse_space", "bytes"),
    ];
    let period_type = Some(vt("space", "bytes"));

    let mapping = pprof_mappings(maps, &mut st);

    let mut functions = Functions::default();

    let mut locations = Locations::default();
    let mut samples: Vec<Sample> = Vec::with_capacity(p.raw.stacks.len());
    for s in &p.raw.stacks {
        let mut ids: Vec<u64> = Vec::with_capacity(s.pcs.len() + 1);
        for pc in &s.pcs {
            ids.push(locations.of_pc(pc, maps, || {
                let syms = p.raw.resolved(pc.addr);
                pc.kept(&syms)
                    .iter()
                    .zip(syms.system_names.iter().skip(pc.skip as usize))
                    .map(|(f, system)| line_of(&mut st, &mut functions, f, system.as_deref()))
                    .collect()
            }));
        }
        let mut synthetic =
            |name: &str, st: &mut Strings| locations.synthetic(st, &mut functions, name);
        if let Some(n) = s.left_out {
            ids.push(synthetic(&format!("{LEFT_OUT} ({n} stacks)"), &mut st));
        } else if ids.is_empty() {
            ids.push(synthetic(UNKNOWN, &mut st));
        }
        // The tracing spans the samples were taken in, root-most.
        if s.span_path != 0 {
            for f in crate::layer::span_frames(s.span_path) {
                ids.push(synthetic(&f.function, &mut st));
            }
        }
        if s.truncated {
            ids.push(synthetic(TRUNCATED, &mut st));
        }
        samples.push(Sample {
            location_id: ids,
            value: vec![
                to_i64(s.alloc_blocks),
                to_i64(s.alloc_bytes),
                to_i64(s.live_blocks),
                to_i64(s.live_bytes),
            ],
            label: Vec::new(),
        });
    }

    let comment = vec![st.get(&format!(
        "leakscope heap profile: unbiased estimates from allocations sampled every {} bytes on average (1 = every allocation)",
        p.sample_bytes()
    ))];
    let default_sample_type = match default {
        DefaultSample::InuseSpace => st.get("inuse_space"),
        DefaultSample::AllocSpace => st.get("alloc_space"),
    };
    Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations.list,
        function: functions.list,
        string_table: st.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos,
        duration_nanos: 0,
        period_type,
        period: to_i64(p.sample_bytes()),
        comment,
        default_sample_type,
    }
}

/// The gzipped protobuf of `p`'s heap profile with this process's mappings.
pub(crate) fn heap_pprof_gz(p: &HeapProfile, default: DefaultSample) -> io::Result<Vec<u8>> {
    let _guard = crate::alloc::thread::ProfilerGuard::new();
    let time_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let profile = heap_profile(p, &executable_mappings(), default, time_nanos);
    let mut out = Vec::new();
    write_gzip(&profile.encode_to_vec(), &mut out)?;
    Ok(out)
}

impl HeapProfile {
    /// Writes the heap profile as a gzipped pprof protobuf (what `go tool pprof`, Parca
    /// and Grafana Pyroscope read): sample types `alloc_objects`, `alloc_space`,
    /// `inuse_objects`, `inuse_space` (the default), estimated as in the flamegraph.
    pub fn write_pprof<W: Write>(&self, mut w: W) -> io::Result<()> {
        w.write_all(&heap_pprof_gz(self, DefaultSample::InuseSpace)?)?;
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::profile::{Frame, RawProfile, RawStack};
    use crate::stats::HeapStats;
    use crate::symbolize::Resolved;

    /// One address's frames: `(function, line)` innermost first, mangled names `_ZN<f>`.
    fn resolved(frames: &[(&str, u32)]) -> Arc<Resolved> {
        Arc::new(Resolved::new(
            frames
                .iter()
                .map(|&(f, line)| Frame {
                    function: Arc::from(f),
                    file: Some(Arc::from("src/app.rs")),
                    line: Some(line),
                })
                .collect(),
            frames
                .iter()
                .map(|&(f, _)| Some(Arc::from(format!("_ZN{f}").as_str())))
                .collect(),
        ))
    }

    fn stack(pcs: Vec<Pc>, truncated: bool, live: u64, alloc: u64) -> RawStack {
        RawStack {
            pcs,
            truncated,
            span_path: 0,
            left_out: None,
            ids: Vec::new(),
            live_bytes: live,
            live_blocks: 1,
            alloc_bytes: alloc,
            alloc_blocks: 2,
        }
    }

    #[test]
    fn ids_mappings_lines_and_synthetic_frames() {
        let mut syms: ahash::AHashMap<usize, Arc<Resolved>> = ahash::AHashMap::new();
        // 0x1100: an allocator frame inlined into `grow`, inlined into `handler`.
        syms.insert(
            0x1100,
            resolved(&[("alloc::raw_vec::grow", 1), ("grow", 10), ("handler", 20)]),
        );
        syms.insert(0x1200, resolved(&[("main", 30)]));
        syms.insert(0x9000, resolved(&[("elsewhere", 40)]));
        let raw = RawProfile {
            stacks: vec![
                stack(
                    vec![
                        Pc {
                            addr: 0x1100,
                            skip: 1,
                            root_skip: 0,
                        },
                        Pc {
                            addr: 0x1200,
                            skip: 0,
                            root_skip: 0,
                        },
                    ],
                    true,
                    100,
                    300,
                ),
                stack(
                    vec![
                        Pc {
                            addr: 0x9000,
                            skip: 0,
                            root_skip: 0,
                        },
                        Pc {
                            addr: 0x1200,
                            skip: 0,
                            root_skip: 0,
                        },
                    ],
                    false,
                    0,
                    50,
                ),
                stack(Vec::new(), false, 7, 7),
            ],
            syms,
        };
        let p = HeapProfile {
            sites: Vec::new(),
            stats: HeapStats::default(),
            self_stats: crate::stats::SelfStats::default(),
            sample_bytes: 4096,
            dropped_samples: 0,
            raw: Arc::new(raw),
            give_back: Default::default(),
        };
        let maps = [ProcMapping {
            start: 0x1000,
            limit: 0x2000,
            offset: 0,
            path: "/bin/app".to_string(),
            build_id: Some("abcd".to_string()),
        }];
        let pr = heap_profile(&p, &maps, DefaultSample::AllocSpace, 1);
        let s = |i: i64| pr.string_table[i as usize].as_str();
        assert_eq!(pr.string_table[0], "");
        assert_eq!(s(pr.default_sample_type), "alloc_space");
        assert_eq!(pr.period, 4096);
        assert_eq!(s(pr.mapping[0].build_id), "abcd");
        for (i, l) in pr.location.iter().enumerate() {
            assert_eq!(l.id, i as u64 + 1);
        }
        for (i, f) in pr.function.iter().enumerate() {
            assert_eq!(f.id, i as u64 + 1);
        }
        // Stack 1: the call addresses, the allocator's inlined frame left out, then the
        // synthetic root frame of a truncated stack.
        let first = &pr.sample[0];
        assert_eq!(first.value, vec![2, 300, 1, 100]);
        let locs: Vec<&Location> = first
            .location_id
            .iter()
            .map(|&id| &pr.location[id as usize - 1])
            .collect();
        assert_eq!(locs.len(), 3);
        assert_eq!((locs[0].address, locs[0].mapping_id), (0x10ff, 1));
        let names = |l: &Location| -> Vec<String> {
            l.line
                .iter()
                .map(|line| s(pr.function[line.function_id as usize - 1].name).to_string())
                .collect()
        };
        assert_eq!(names(locs[0]), ["grow", "handler"]);
        assert_eq!(locs[0].line[0].line, 10);
        assert_eq!(names(locs[2]), ["[truncated]"]);
        assert_eq!(locs[2].address, 0);
        // Stack 2: outside every mapping -> mapping 0; `main` is one location, reused.
        let second = &pr.sample[1];
        let l0 = &pr.location[second.location_id[0] as usize - 1];
        assert_eq!((l0.address, l0.mapping_id), (0x8fff, 0));
        assert_eq!(second.location_id[1], first.location_id[1]);
        // Stack 3: nothing left after trimming -> one `[unknown]` frame.
        let third = &pr.sample[2];
        assert_eq!(third.location_id.len(), 1);
        assert_eq!(
            names(&pr.location[third.location_id[0] as usize - 1]),
            ["[unknown]"]
        );
        // Functions are deduplicated by (name, system name, file).
        let main_fns = pr.function.iter().filter(|f| s(f.name) == "main").count();
        assert_eq!(main_fns, 1);
        assert_eq!(
            s(pr.function
                .iter()
                .find(|f| s(f.name) == "main")
                .unwrap()
                .system_name),
            "_ZNmain"
        );
    }
}
