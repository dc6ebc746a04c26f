//! The executable's own debug info, read through `/proc/self/exe`: the file the process
//! runs, even after the path it was started from names another file (a deploy, a
//! rebuild), where `backtrace` (which reopens the path) would find other debug info or
//! none. Loaded on first use, given back with `backtrace`'s index.
//!
//! The file is mapped once for the process ([`crate::sys::mapped`]) and read in place
//! by one addr2line context. Before the context is first built, the units addr2line
//! would find no address range for ([`super::units`]) are dealt with, so addr2line does
//! not parse their line programs looking for addresses (most of a Rust binary's units;
//! that parse was most of the context's cost):
//! - a unit without any range (rustc's units without code, which hold declarations
//!   other units refer to) gets a set at an address no code has, in a `.debug_aranges`
//!   of leakscope's own (the file's sets and these);
//! - a unit whose every `DW_AT_ranges` entry the linker discarded (standard-library code
//!   not linked in) has its header rewritten, in the process's private copy of its
//!   page, as a type unit's of the same length, which addr2line passes over.
//!
//! Units share abbreviation tables, which are parsed once each. Where the units cannot
//! be read that way (debug info in another file, compressed sections, split DWARF, forms
//! the scan does not read), addr2line's loader takes the whole file as it is.
//! `symbolize::tests::the_unit_index_resolves_as_the_whole_file_does` checks that the
//! frames are the loader's.

use std::ops::Range;
use std::sync::OnceLock;

use addr2line::gimli;
use gimli::{EndianSlice, RunTimeEndian, SectionId};
use object::{Object, ObjectSection};
use parking_lot::Mutex;

use super::units::{rangeless_units, IndexSections, Rangeless};
use super::RawSym;

type Slice = EndianSlice<'static, RunTimeEndian>;

struct Exe {
    source: Source,
    bias: u64,
    ranges: Vec<(usize, usize)>,
}

enum Source {
    Mapped(Box<Mapped>),
    Loader(Box<addr2line::Loader>),
}

/// The context over the mapped file, and its symbol table for addresses without DWARF.
struct Mapped {
    ctx: addr2line::Context<Slice>,
    file: object::File<'static>,
    /// The symbol table, sorted, built on the first address the DWARF does not name.
    symbols: Option<object::SymbolMap<object::SymbolMapName<'static>>>,
}

/// `None`: not loaded; `Some(None)`: could not be loaded (the caller falls back to
/// `backtrace`).
static EXE: Mutex<Option<Option<Exe>>> = Mutex::new(None);

fn load() -> Option<Exe> {
    let (bias, ranges) = crate::sys::main_program()?;
    let source = match mapped() {
        Some(m) => Source::Mapped(Box::new(m)),
        None => Source::Loader(Box::new(addr2line::Loader::new("/proc/self/exe").ok()?)),
    };
    Some(Exe {
        source,
        bias,
        ranges,
    })
}

/// The mapped file with its rangeless units set aside: made once per process.
struct Prepared {
    bytes: &'static [u8],
    /// The file's `.debug_aranges` sets followed by one for each unit without any range.
    aranges: Box<[u8]>,
}

static PREPARED: OnceLock<Option<Prepared>> = OnceLock::new();

#[cfg(target_os = "linux")]
fn prepared() -> Option<&'static Prepared> {
    PREPARED
        .get_or_init(|| {
            let mut aranges = None;
            let bytes = crate::sys::mapped::exe(|b| match prepare(b) {
                Some((written, a)) => {
                    aranges = Some(a);
                    written
                }
                None => Vec::new(),
            })?;
            Some(Prepared {
                bytes,
                aranges: aranges?,
            })
        })
        .as_ref()
}

#[cfg(not(target_os = "linux"))]
fn prepared() -> Option<&'static Prepared> {
    None
}

/// Where a section's bytes are in the file; `None` if compressed (or unreadable).
fn file_range(file: &object::File<'_>, id: SectionId) -> Option<Range<usize>> {
    let Some(section) = file.section_by_name(id.name()) else {
        return Some(0..0);
    };
    let r = section.compressed_file_range().ok()?;
    if r.format != object::CompressionFormat::None {
        return None;
    }
    let start = usize::try_from(r.offset).ok()?;
    Some(start..start + usize::try_from(r.uncompressed_size).ok()?)
}

/// What [`prepare`] did: the byte ranges it wrote, and the `.debug_aranges` to use.
type Prepare = (Vec<Range<usize>>, Box<[u8]>);

/// The first address of the ranges given to rangeless units: far above any code.
const NO_CODE: u64 = 0xffff_f000_0000_0000;

/// Sets the rangeless units of the file in `b` aside (see [`plan`]): rewrites the headers
/// of those with a range list in `b` and builds the `.debug_aranges` to use. Returns the
/// byte ranges written and the aranges; `None` if the units cannot be read here (the
/// loader is used).
fn prepare(b: &mut [u8]) -> Option<Prepare> {
    let (masks, aranges, info_at) = {
        let bytes: &[u8] = b;
        let file = object::File::parse(bytes).ok()?;
        if !file.is_little_endian() {
            return None;
        }
        let at = |id| -> Option<Range<usize>> { file_range(&file, id) };
        let (info, abbrev, aranges, ranges, rnglists) = (
            at(SectionId::DebugInfo)?,
            at(SectionId::DebugAbbrev)?,
            at(SectionId::DebugAranges)?,
            at(SectionId::DebugRanges)?,
            at(SectionId::DebugRngLists)?,
        );
        if info.is_empty() {
            // Debug info elsewhere (`.gnu_debuglink`, a `.dwp`) or none: the loader.
            return None;
        }
        let s = IndexSections {
            endian: RunTimeEndian::Little,
            info: bytes.get(info.clone())?,
            abbrev: bytes.get(abbrev)?,
            aranges: bytes.get(aranges)?,
            ranges: bytes.get(ranges)?,
            rnglists: bytes.get(rnglists)?,
        };
        let units = rangeless_units(&s)?;
        let (masks, sets) = plan(&units, s.info);
        let mut out = s.aranges.to_vec();
        out.extend_from_slice(&sets);
        (masks, out.into_boxed_slice(), info)
    };
    let mut written = Vec::new();
    for (off, new) in masks {
        let at = info_at.start + off..info_at.start + off + new.len();
        b.get_mut(at.clone())?.copy_from_slice(&new);
        written.push(at);
    }
    Some((written, aranges))
}

/// What [`prepare`] writes for the rangeless units: the header of each unit with a
/// `DW_AT_ranges` list (DWARF 2–4) rewritten as a type unit's of the same length (its
/// offset in `.debug_info` and the 24 new bytes), and an aranges set at [`NO_CODE`] +
/// 16·i for each unit with no list.
#[allow(clippy::type_complexity)]
fn plan(units: &[Rangeless], info: &[u8]) -> (Vec<(usize, [u8; 24])>, Vec<u8>) {
    let mut masks = Vec::new();
    let mut sets = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let at = NO_CODE + 16 * i as u64;
        match u.list {
            Some(_) if u.version <= 4 => {
                // A DWARF 4 header: length (4), version (2), abbreviations (4), address
                // size (1). A DWARF 5 type unit's: length, version 5, `DW_UT_type`,
                // address size, abbreviations, signature (8), type offset (4).
                let Some(old) = info.get(u.offset..u.offset + 11) else {
                    continue;
                };
                let len = u32::from_le_bytes(old[..4].try_into().unwrap_or_default());
                if len < 20 {
                    continue;
                }
                let mut new = [0u8; 24];
                new[..4].copy_from_slice(&old[..4]);
                new[4..6].copy_from_slice(&5u16.to_le_bytes());
                new[6] = 0x02;
                new[7] = old[10];
                new[8..12].copy_from_slice(&old[6..10]);
                new[12..20].copy_from_slice(&(i as u64).to_le_bytes());
                new[20..24].copy_from_slice(&24u32.to_le_bytes());
                masks.push((u.offset, new));
            }
            Some(_) => {}
            None => {
                let Ok(unit) = u32::try_from(u.offset) else {
                    continue;
                };
                // A DWARF 2 set of 8-byte addresses: header (12 bytes, padded to 16),
                // one tuple, the terminating tuple.
                sets.extend_from_slice(&44u32.to_le_bytes());
                sets.extend_from_slice(&2u16.to_le_bytes());
                sets.extend_from_slice(&unit.to_le_bytes());
                sets.extend_from_slice(&[8, 0, 0, 0, 0, 0]);
                sets.extend_from_slice(&at.to_le_bytes());
                sets.extend_from_slice(&1u64.to_le_bytes());
                sets.extend_from_slice(&[0; 16]);
            }
        }
    }
    (masks, sets)
}

/// The context over the prepared mapping; `None` where the loader must take over.
fn mapped() -> Option<Mapped> {
    let p = prepared()?;
    let file = object::File::parse(p.bytes).ok()?;
    let mut sections: Vec<(SectionId, &'static [u8])> = Vec::new();
    for id in ALL_SECTIONS {
        let r = file_range(&file, id)?;
        sections.push((id, p.bytes.get(r)?));
    }
    let mut dwarf = gimli::Dwarf::load(|id| -> Result<Slice, ()> {
        let data: &'static [u8] = match id {
            SectionId::DebugAranges => &p.aranges,
            _ => sections.iter().find(|s| s.0 == id).map_or(&[][..], |s| s.1),
        };
        Ok(EndianSlice::new(data, RunTimeEndian::Little))
    })
    .ok()?;
    // Units share abbreviation tables (a Rust binary's ~1,300 units have ~260): each
    // shared table is parsed once, not once per unit.
    dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
    let ctx = addr2line::Context::from_dwarf(dwarf).ok()?;
    Some(Mapped {
        ctx,
        file,
        symbols: None,
    })
}

/// The sections a `gimli::Dwarf` reads.
const ALL_SECTIONS: [SectionId; 17] = [
    SectionId::DebugAbbrev,
    SectionId::DebugAddr,
    SectionId::DebugAranges,
    SectionId::DebugCuIndex,
    SectionId::DebugInfo,
    SectionId::DebugLine,
    SectionId::DebugLineStr,
    SectionId::DebugLoc,
    SectionId::DebugLocLists,
    SectionId::DebugMacinfo,
    SectionId::DebugMacro,
    SectionId::DebugRanges,
    SectionId::DebugRngLists,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
    SectionId::DebugTuIndex,
    SectionId::DebugTypes,
];

impl Mapped {
    /// The frames at file address `probe`, innermost first.
    fn frames(&mut self, probe: u64) -> Vec<RawSym> {
        let mut out = match self.ctx.find_frames(probe).skip_all_loads() {
            Ok(frames) => named_frames(frames),
            Err(_) => Vec::new(),
        };
        if out.is_empty() {
            let symbols = self.symbols.get_or_insert_with(|| self.file.symbol_map());
            if let Some(sym) = symbols.containing(probe) {
                let (file, line) = match self.ctx.find_location(probe) {
                    Ok(Some(l)) => (l.file.map(str::to_string), l.line),
                    _ => (None, None),
                };
                out.push((
                    demangled(sym.name()),
                    Some(sym.name().to_string()),
                    file,
                    line,
                ));
            }
        }
        out
    }
}

/// The frames of return address `addr` if it lies in the executable (the call
/// instruction before it, innermost first; empty if neither its debug info nor its
/// symbol table names it); `None` elsewhere, or if the executable cannot be read.
pub(super) fn frames(addr: usize) -> Option<Vec<RawSym>> {
    let mut exe = EXE.lock();
    let exe = exe.get_or_insert_with(load).as_mut()?;
    if addr == 0 || !exe.ranges.iter().any(|&(s, e)| (s..e).contains(&addr)) {
        return None;
    }
    let probe = (addr as u64 - 1).wrapping_sub(exe.bias);
    let out = match &mut exe.source {
        Source::Mapped(m) => m.frames(probe),
        Source::Loader(loader) => loader_frames(loader, probe),
    };
    Some(out)
}

fn loader_frames(loader: &addr2line::Loader, probe: u64) -> Vec<RawSym> {
    let mut out = match loader.find_frames(probe) {
        Ok(frames) => named_frames(frames),
        Err(_) => Vec::new(),
    };
    if out.is_empty() {
        if let Some(name) = loader.find_symbol(probe) {
            let name = name.to_string();
            let (file, line) = match loader.find_location(probe) {
                Ok(Some(l)) => (l.file.map(str::to_string), l.line),
                _ => (None, None),
            };
            out.push((demangled(&name), Some(name), file, line));
        }
    }
    out
}

/// The frames addr2line found that have a function name, innermost first.
fn named_frames<R: gimli::Reader>(mut frames: addr2line::FrameIter<'_, R>) -> Vec<RawSym> {
    let mut out: Vec<RawSym> = Vec::new();
    while let Ok(Some(f)) = frames.next() {
        let Some(name) = f.function.as_ref().and_then(|n| n.raw_name().ok()) else {
            continue;
        };
        let (file, line) = f
            .location
            .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
        out.push((demangled(&name), Some(name.into_owned()), file, line));
    }
    out
}

/// A Rust symbol demangled without its hash (`{:#}`); other names as they are.
fn demangled(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_string(),
    }
}

/// Gives the loaded debug info back (it is loaded again on next use), and the resident
/// pages of the mapped file with it.
pub(super) fn release() {
    *EXE.lock() = None;
    #[cfg(target_os = "linux")]
    crate::sys::mapped::drop_pages();
}

/// Which way the executable is read: `"mapped"` (the prepared mapping) or `"loader"`;
/// `None` if not loaded (or not loadable).
#[cfg(test)]
pub(super) fn source() -> Option<&'static str> {
    let mut exe = EXE.lock();
    match exe.get_or_insert_with(load).as_ref()?.source {
        Source::Mapped(_) => Some("mapped"),
        Source::Loader(_) => Some("loader"),
    }
}

/// The executable's frames of `addr` read by addr2line's loader over the file as it
/// is, for comparison.
#[cfg(test)]
pub(super) fn frames_by_loader(loader: &addr2line::Loader, addr: usize) -> Vec<RawSym> {
    let (bias, _) = crate::sys::main_program().expect("main program");
    loader_frames(loader, (addr as u64 - 1).wrapping_sub(bias))
}
