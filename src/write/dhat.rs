//! DHAT's JSON (`.dhat.json`), the file valgrind's DHAT and the dhat crate write and
//! valgrind's `dh_view.html` reads (format version 2, mode `rust-heap`).
//!
//! One program point (`pps[]`) per distinct trimmed address stack, frames innermost
//! first as indices into `ftbl` (`"[root]"` first, as the dhat crate writes). What
//! leakscope knows goes in as is: `tb`/`tbk` (allocated bytes and blocks) and `eb`/`ebk`
//! (live at the snapshot), exact with `LEAKSCOPE_SAMPLE_BYTES=1` and unbiased estimates
//! otherwise. What it does not record is filled so the viewer works and is documented:
//! block lifetimes (`tl`) are left out (the viewer then shows no lifetime figures), the
//! per-site maximum (`mb`/`mbk`) and the figures at the global peak (`gb`/`gbk`) are the
//! live figures at the snapshot (lower bounds), and `tg` (time of the peak) is `te`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use crate::profile::HeapProfile;

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
    pub(crate) mb: u64,
    pub(crate) mbk: u64,
    pub(crate) gb: u64,
    pub(crate) gbk: u64,
    pub(crate) eb: u64,
    pub(crate) ebk: u64,
    pub(crate) fs: Vec<usize>,
}

/// Builds the DHAT data of `p`; `elapsed` is the time since the session started.
pub(crate) fn dhat_json(p: &HeapProfile, elapsed: Duration, cmd: String) -> DhatJson {
    let mut ftbl: Vec<String> = vec!["[root]".to_string()];
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut pps = Vec::with_capacity(p.raw.stacks.len());
    for s in &p.raw.stacks {
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
        pps.push(Pp {
            tb: s.alloc_bytes,
            tbk: s.alloc_blocks,
            mb: s.live_bytes,
            mbk: s.live_blocks,
            gb: s.live_bytes,
            gbk: s.live_blocks,
            eb: s.live_bytes,
            ebk: s.live_blocks,
            fs,
        });
    }
    let te = elapsed.as_micros();
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
        tg: te,
        te,
        pps,
        ftbl,
    }
}

/// Writes `p` as DHAT JSON.
pub(crate) fn write_dhat<W: Write>(p: &HeapProfile, elapsed: Duration, mut w: W) -> io::Result<()> {
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    serde_json::to_writer(&mut w, &dhat_json(p, elapsed, cmd)).map_err(io::Error::other)?;
    writeln!(w)?;
    w.flush()
}
