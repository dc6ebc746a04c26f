//! The compilation units of the executable's DWARF that declare no address range, found
//! by a scan of the unit headers and of each unit's first entry only.
//!
//! When its context is built, addr2line looks for each unit's ranges in its first entry
//! (`DW_AT_ranges`, then `.debug_aranges`, then `DW_AT_low_pc`/`DW_AT_high_pc`), and for
//! a unit with none it parses the whole line program looking for addresses, and keeps
//! it. In a Rust binary most units are of that kind: rustc's units without code, and
//! standard-library units whose every range the linker discarded (code not linked in).
//! Their line programs were most of the context's cost (100–150 M instructions and tens
//! of MiB for a 30 MB binary) and give no address. The scan here finds them the same
//! way addr2line would, reading only the first entry's abbreviation and attributes, so
//! the symbolizer can set each aside before addr2line sees it (`super::exe`).
//!
//! Units the scan cannot read (64-bit DWARF, an attribute form it does not know, an
//! address index of DWARF 5, split DWARF) make [`rangeless_units`] give up: the
//! symbolizer then uses addr2line's loader as it is.

use addr2line::gimli;
use gimli::{EndianSlice, RunTimeEndian};

type Slice<'a> = EndianSlice<'a, RunTimeEndian>;

/// The DWARF sections the index reads, in place.
pub(super) struct IndexSections<'a> {
    pub(super) endian: RunTimeEndian,
    pub(super) info: &'a [u8],
    pub(super) abbrev: &'a [u8],
    pub(super) aranges: &'a [u8],
    pub(super) ranges: &'a [u8],
    pub(super) rnglists: &'a [u8],
}

/// A compilation unit for which addr2line would find no address range in its first
/// entry or `.debug_aranges` (and so would parse its whole line program looking for
/// some).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rangeless {
    /// The unit's offset in `.debug_info`.
    pub(super) offset: usize,
    /// Its `DW_AT_ranges` list in `.debug_ranges` (DWARF 2–4) and the list's base
    /// address, if it has one (a list whose every range the linker discarded).
    pub(super) list: Option<(usize, u64)>,
    /// Its DWARF version.
    pub(super) version: u16,
}

/// The units addr2line would find no range for; `None` if a unit cannot be read here.
pub(super) fn rangeless_units(s: &IndexSections<'_>) -> Option<Vec<Rangeless>> {
    let aranges = aranges_by_unit(s)?;
    let debug_info = gimli::DebugInfo::new(s.info, s.endian);
    let range_lists = gimli::RangeLists::new(
        gimli::DebugRanges::new(s.ranges, s.endian),
        gimli::DebugRngLists::new(s.rnglists, s.endian),
    );
    let no_addr = gimli::DebugAddr::from(EndianSlice::new(&[], s.endian));
    let mut out = Vec::new();
    let mut headers = debug_info.units();
    while let Some(header) = headers.next().ok()? {
        let offset = header.debug_info_offset()?.0;
        match header.type_() {
            gimli::UnitType::Compilation => {}
            // Split DWARF: the code's debug info is in other files (the loader finds
            // them).
            gimli::UnitType::Skeleton(_) | gimli::UnitType::SplitCompilation(_) => return None,
            // Type and partial units have no code of their own.
            _ => continue,
        }
        let enc = header.encoding();
        if enc.format != gimli::Format::Dwarf32 || !(2..=5).contains(&enc.version) {
            return None;
        }
        let first = first_entry(s, &header)?;
        let base = first.low_pc.unwrap_or(0);
        let has_range = if let Some(off) = first
            .ranges
            .filter(|&off| !(enc.version <= 4 && enc.address_size == 8 && all_empty(s.ranges, off)))
        {
            // A list that cannot be read counts as rangeless: addr2line fails on it too.
            match range_lists.ranges(
                gimli::RangeListsOffset(off),
                enc,
                base,
                &no_addr,
                gimli::DebugAddrBase(0),
            ) {
                Ok(mut list) => {
                    let mut any = false;
                    while let Ok(Some(r)) = list.next() {
                        if r.begin < r.end {
                            any = true;
                            break;
                        }
                    }
                    any
                }
                Err(_) => false,
            }
        } else if first.ranges.is_some() {
            false
        } else if aranges.contains(&offset) {
            true
        } else if let (Some(low), Some(high)) = (first.low_pc, first.high_pc) {
            let end = match high {
                High::Addr(a) => a,
                High::Size(n) => low.wrapping_add(n),
            };
            low < end
        } else {
            false
        };
        if !has_range {
            out.push(Rangeless {
                offset,
                list: first.ranges.map(|off| (off, base)),
                version: enc.version,
            });
        }
    }
    Some(out)
}

/// True if the `.debug_ranges` list at `off` (8-byte addresses) has only empty entries
/// (begin equal to end, as the linker leaves the ranges of code it discarded) before
/// its end: a tight loop over what gimli would read entry by entry, to the same answer
/// (no range). False for anything else (gimli reads it).
fn all_empty(ranges: &[u8], off: usize) -> bool {
    let mut i = off;
    while let Some(pair) = ranges.get(i..i + 16) {
        let (b, e) = pair.split_at(8);
        if b != e || b.iter().all(|&x| x == 0xff) {
            return false;
        }
        if b.iter().all(|&x| x == 0) {
            // (0, 0): the end of the list.
            return true;
        }
        i += 16;
    }
    false
}

/// The `.debug_info` offsets of the units `.debug_aranges` gives a non-empty range.
fn aranges_by_unit(s: &IndexSections<'_>) -> Option<ahash::AHashSet<usize>> {
    let mut units = ahash::AHashSet::new();
    let aranges = gimli::DebugAranges::new(s.aranges, s.endian);
    let mut headers = aranges.headers();
    while let Ok(Some(h)) = headers.next() {
        let mut entries = h.entries();
        // Errors (an address overflow seen from rustc) skip the entry, as addr2line does.
        while let Some(e) = entries.next().transpose() {
            if e.is_ok_and(|e| e.length() != 0) {
                units.insert(h.debug_info_offset().0);
                break;
            }
        }
    }
    Some(units)
}

/// The end of a unit's code: an address, or a size from `DW_AT_low_pc`.
#[derive(Clone, Copy, Debug)]
enum High {
    Addr(u64),
    Size(u64),
}

/// What the unit's first entry says of its addresses.
#[derive(Debug, Default)]
struct FirstEntry {
    low_pc: Option<u64>,
    high_pc: Option<High>,
    /// `DW_AT_ranges` as a section offset (`.debug_ranges` before DWARF 5,
    /// `.debug_rnglists` from 5).
    ranges: Option<usize>,
}

/// Reads the unit's first entry: its abbreviation (only that declaration of the unit's
/// table) and attribute values. `None` for a form or value kind not handled here.
fn first_entry<'a>(
    s: &IndexSections<'a>,
    header: &gimli::UnitHeader<Slice<'a>>,
) -> Option<FirstEntry> {
    let addr_size = header.address_size();
    let version = header.version();
    let mut die = Reader::new(
        header
            .range_from(gimli::UnitOffset(header.header_size())..)
            .ok()?
            .slice(),
    );
    let code = die.uleb()?;
    let mut abbrev = Reader::new(s.abbrev.get(header.debug_abbrev_offset().0..)?);
    // Find the declaration of `code` (the first one, in practice).
    loop {
        let c = abbrev.uleb()?;
        if c == 0 {
            return None;
        }
        let _tag = abbrev.uleb()?;
        abbrev.skip(1)?; // DW_CHILDREN_*
        if c == code {
            break;
        }
        loop {
            let (name, form) = (abbrev.uleb()?, abbrev.uleb()?);
            if name == 0 && form == 0 {
                break;
            }
            if form == DW_FORM_IMPLICIT_CONST {
                abbrev.sleb()?;
            }
        }
    }
    let mut out = FirstEntry::default();
    loop {
        let (name, mut form) = (abbrev.uleb()?, abbrev.uleb()?);
        if name == 0 && form == 0 {
            return Some(out);
        }
        if form == DW_FORM_IMPLICIT_CONST {
            abbrev.sleb()?;
            continue;
        }
        if form == DW_FORM_INDIRECT {
            form = die.uleb()?;
        }
        let value = die.value(form, addr_size, version)?;
        match (name, value) {
            (DW_AT_LOW_PC, Value::Addr(a)) => out.low_pc = Some(a),
            (DW_AT_HIGH_PC, Value::Addr(a)) => out.high_pc = Some(High::Addr(a)),
            (DW_AT_HIGH_PC, Value::Const(n)) => out.high_pc = Some(High::Size(n)),
            (DW_AT_RANGES, Value::Offset(o) | Value::Const(o)) => {
                out.ranges = Some(usize::try_from(o).ok()?)
            }
            // An address or range list by index (DWARF 5 `addrx`, `rnglistx`): the
            // bases they need are not read here.
            (DW_AT_LOW_PC | DW_AT_HIGH_PC | DW_AT_RANGES, Value::Index) => return None,
            _ => {}
        }
    }
}

const DW_AT_LOW_PC: u64 = 0x11;
const DW_AT_HIGH_PC: u64 = 0x12;
const DW_AT_RANGES: u64 = 0x55;
const DW_FORM_INDIRECT: u64 = 0x16;
const DW_FORM_IMPLICIT_CONST: u64 = 0x21;

/// An attribute value as far as the scan cares.
enum Value {
    Addr(u64),
    Const(u64),
    Offset(u64),
    /// An index into `.debug_addr`, `.debug_rnglists` or the like.
    Index,
    Other,
}

/// A little-endian cursor over DWARF bytes (the x86_64 and aarch64 executables this
/// reads are little-endian; a big-endian file is left to the loader: see `super::exe`).
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }

    fn skip(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.b.split_at_checked(n)?;
        self.b = rest;
        Some(head)
    }

    fn fixed(&mut self, n: usize) -> Option<u64> {
        let bytes = self.skip(n)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
        )
    }

    fn uleb(&mut self) -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = *self.b.first()?;
            self.b = &self.b[1..];
            if shift < 64 {
                v |= u64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
    }

    fn sleb(&mut self) -> Option<()> {
        loop {
            let byte = *self.b.first()?;
            self.b = &self.b[1..];
            if byte & 0x80 == 0 {
                return Some(());
            }
        }
    }

    /// Reads (or steps over) one value of `form` (DWARF 2–5, 32-bit format).
    fn value(&mut self, form: u64, addr_size: u8, version: u16) -> Option<Value> {
        let off = 4; // 32-bit DWARF
        Some(match form {
            0x01 => Value::Addr(self.fixed(usize::from(addr_size))?),
            0x05 => Value::Const(self.fixed(2)?),
            0x06 => Value::Const(self.fixed(4)?),
            0x07 => Value::Const(self.fixed(8)?),
            0x0b => Value::Const(self.fixed(1)?),
            0x0f => Value::Const(self.uleb()?),
            0x0d | 0x15 => {
                // sdata, ref_udata
                self.sleb_or_uleb(form)?;
                Value::Other
            }
            0x17 => Value::Offset(self.fixed(off)?), // sec_offset
            0x0e | 0x1d | 0x1f => {
                // strp, strp_sup, line_strp
                self.skip(off)?;
                Value::Other
            }
            0x10 => {
                // ref_addr: an address's size in DWARF 2, an offset after
                self.skip(if version <= 2 {
                    usize::from(addr_size)
                } else {
                    off
                })?;
                Value::Other
            }
            0x08 => {
                // string: up to and including the NUL
                let n = self.b.iter().position(|&x| x == 0)?;
                self.skip(n + 1)?;
                Value::Other
            }
            0x03 | 0x04 | 0x09 | 0x0a | 0x18 => {
                // block2, block4, block, block1, exprloc
                let n = match form {
                    0x03 => self.fixed(2)?,
                    0x04 => self.fixed(4)?,
                    0x0a => self.fixed(1)?,
                    _ => self.uleb()?,
                };
                self.skip(usize::try_from(n).ok()?)?;
                Value::Other
            }
            0x0c | 0x11 => {
                self.skip(1)?; // flag, ref1
                Value::Other
            }
            0x12 => {
                self.skip(2)?; // ref2
                Value::Other
            }
            0x13 | 0x1c => {
                self.skip(4)?; // ref4, ref_sup4
                Value::Other
            }
            0x14 | 0x20 | 0x24 => {
                self.skip(8)?; // ref8, ref_sig8, ref_sup8
                Value::Other
            }
            0x1e => {
                self.skip(16)?; // data16
                Value::Other
            }
            0x19 => Value::Other, // flag_present
            0x1a | 0x22 => {
                self.uleb()?; // strx, loclistx
                Value::Other
            }
            0x1b | 0x23 => {
                self.uleb()?; // addrx, rnglistx
                Value::Index
            }
            0x25..=0x28 => {
                self.skip((form - 0x24) as usize)?; // strx1..4
                Value::Other
            }
            0x29..=0x2c => {
                self.skip((form - 0x28) as usize)?; // addrx1..4
                Value::Index
            }
            _ => return None,
        })
    }

    fn sleb_or_uleb(&mut self, form: u64) -> Option<()> {
        if form == 0x0d {
            self.sleb()
        } else {
            self.uleb().map(|_| ())
        }
    }
}
