//! DHAT's JSON (`.dhat.json`), the file valgrind's DHAT and the dhat crate write and
//! valgrind's `dh_view.html` reads (format version 2, mode `rust-heap`).
//!
//! One program point (`pps[]`) per distinct trimmed address stack, frames innermost
//! first as indices into `ftbl` (`"[root]"` first, as the dhat crate writes); stacks
//! whose frames print the same are merged (the viewer rejects a repeated location). Per
//! stack: `tb`/`tbk` (allocated bytes and blocks), `tl` (total lifetime of its blocks,
//! the live ones counted up to the file's end time), `mb`/`mbk` (its maximum live bytes,
//! and blocks then), `gb`/`gbk` (live at the heap's peak, at `tg`) and `eb`/`ebk` (live
//! at the end); exact with `LEAKSCOPE_SAMPLE_BYTES=1`, unbiased estimates otherwise.
//! Times are microseconds since the session started.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::profile::HeapProfile;
use crate::snapshot::lifetimes::Lifetimes;

/// The file's top level, field names as the format has them.
#[derive(Serialize)]
#[allow(non_snake_case)]
pub(crate) struct DhatJson {
    pub(crate) dhatFileVersion: u32,
    pub(crate) mode: &'static str,
    pub(crate) verb: &'static str,
    pub(crate) bklt: bool,
    pub(crate) bkacc: bool,
    pub(crate) tu: &'static str,
    pub(crate) Mtu: &'static str,
    pub(crate) tuth: u64,
    pub(crate) cmd: String,
    pub(crate) pid: u32,
    pub(crate) tg: u128,
    pub(crate) te: u128,
    pub(crate) pps: Vec<Pp>,
    pub(crate) ftbl: Vec<String>,
}

/// One program point (allocation stack).
#[derive(Serialize)]
pub(crate) struct Pp {
    pub(crate) tb: u64,
    pub(crate) tbk: u64,
    pub(crate) tl: u128,
    pub(crate) mb: u64,
    pub(crate) mbk: u64,
    pub(crate) gb: u64,
    pub(crate) gbk: u64,
    pub(crate) eb: u64,
    pub(crate) ebk: u64,
    pub(crate) fs: Vec<usize>,
}

/// Builds the DHAT data of `p`, with the figures over time `t` read for it (their
/// moment is the file's end time).
pub(crate) fn dhat_json(p: &HeapProfile, t: &Lifetimes, cmd: String) -> DhatJson {
    let mut ftbl: Vec<String> = vec!["[root]".to_string()];
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut pps: Vec<Pp> = Vec::with_capacity(p.raw.stacks.len());
    let mut pp_of: HashMap<Vec<usize>, usize> = HashMap::new();
    for (k, s) in p.raw.stacks.iter().enumerate() {
        let mut fs = Vec::with_capacity(s.pcs.len() * 2);
        let mut push = |fs: &mut Vec<usize>, text: String| {
            let next = ftbl.len();
            let i = *index.entry(text.clone()).or_insert(next);
            if i == next {
                ftbl.push(text);
            }
            fs.push(i);
        };
        for pc in &s.pcs {
            let syms = p.raw.resolved(pc.addr);
            for sym in pc.kept(&syms) {
                push(
                    &mut fs,
                    format!(
                        "{:#x}: {} ({}:{})",
                        pc.addr,
                        sym.function,
                        sym.file.as_deref().unwrap_or("???"),
                        sym.line.unwrap_or(0)
                    ),
                );
            }
        }
        if fs.is_empty() {
            push(&mut fs, crate::profile::UNKNOWN.to_string());
        }
        // The tracing spans the samples were taken in, root-most.
        if s.span_path != 0 {
            for f in crate::layer::span_frames(s.span_path) {
                push(&mut fs, format!("[span] {}", f.function));
            }
        }
        if s.truncated {
            push(&mut fs, "[truncated]".to_string());
        }
        let x = t.stacks.get(k).copied().unwrap_or_default();
        let mut pp = Pp {
            tb: s.alloc_bytes,
            tbk: s.alloc_blocks,
            tl: x.lifetime.as_micros(),
            mb: x.max_bytes,
            mbk: x.max_blocks,
            gb: x.peak_bytes,
            gbk: x.peak_blocks,
            eb: s.live_bytes,
            ebk: s.live_blocks,
            fs: Vec::new(),
        };
        // The maximum is read a moment after the counts: never below what they say.
        for (b, k) in [(pp.eb, pp.ebk), (pp.gb, pp.gbk)] {
            if b > pp.mb {
                (pp.mb, pp.mbk) = (b, k);
            }
        }
        match pp_of.get(&fs) {
            Some(&i) => pps[i].merge(&pp),
            None => {
                pp_of.insert(fs.clone(), pps.len());
                pp.fs = fs;
                pps.push(pp);
            }
        }
    }
    let te = t.elapsed.as_micros();
    let tg = t
        .peak_ago
        .map_or(0, |ago| t.elapsed.saturating_sub(ago).as_micros());
    DhatJson {
        dhatFileVersion: 2,
        mode: "rust-heap",
        verb: "Allocated",
        bklt: true,
        bkacc: false,
        tu: "µs",
        Mtu: "s",
        tuth: 10,
        cmd,
        pid: std::process::id(),
        tg,
        te,
        pps,
        ftbl,
    }
}

impl Pp {
    /// Adds `o`'s figures (a stack whose frames print the same); maxima add up, so the
    /// merged maximum is an upper bound, as DHAT's viewer does for a call tree's nodes.
    fn merge(&mut self, o: &Pp) {
        self.tb += o.tb;
        self.tbk += o.tbk;
        self.tl += o.tl;
        self.mb += o.mb;
        self.mbk += o.mbk;
        self.gb += o.gb;
        self.gbk += o.gbk;
        self.eb += o.eb;
        self.ebk += o.ebk;
    }
}

/// Writes `p` as DHAT JSON, with its figures over time `t`.
pub(crate) fn write_dhat<W: Write>(p: &HeapProfile, t: &Lifetimes, mut w: W) -> io::Result<()> {
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    serde_json::to_writer(&mut w, &dhat_json(p, t, cmd)).map_err(io::Error::other)?;
    writeln!(w)?;
    w.flush()
}
