//! The process's executable mappings (`/proc/self/maps`) with the GNU build ID of each
//! mapped file, for the `mapping` table of pprof profiles. Linux only; elsewhere empty.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use parking_lot::Mutex;

/// One executable mapping of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) start: u64,
    pub(crate) limit: u64,
    pub(crate) offset: u64,
    pub(crate) path: String,
    /// Lowercase hex of the file's `NT_GNU_BUILD_ID` note, if it has one.
    pub(crate) build_id: Option<String>,
}

/// Build IDs by file path (a file's note does not change while it is mapped).
static BUILD_IDS: Mutex<Option<HashMap<String, Option<String>>>> = Mutex::new(None);

/// The executable file mappings of this process now, by start address.
pub(crate) fn executable_mappings() -> Vec<Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut out = parse_maps(&maps);
    for m in &mut out {
        let cached = BUILD_IDS
            .lock()
            .as_ref()
            .and_then(|c| c.get(&m.path).cloned());
        m.build_id = match cached {
            Some(id) => id,
            None => {
                let id = read_build_id(&m.path);
                BUILD_IDS
                    .lock()
                    .get_or_insert_with(HashMap::new)
                    .insert(m.path.clone(), id.clone());
                id
            }
        };
    }
    out.sort_by_key(|m| m.start);
    out
}

/// Parses the lines of `/proc/<pid>/maps` (`start-end perms offset dev inode path`),
/// keeping executable mappings of files (not `[vdso]` and the like).
pub(crate) fn parse_maps(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let offset = f.next()?;
            let _dev = f.next()?;
            let _inode = f.next()?;
            let path = f.collect::<Vec<_>>().join(" ");
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                limit: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                path: path.strip_suffix(" (deleted)").unwrap_or(&path).to_string(),
                build_id: None,
            })
        })
        .collect()
}

/// The GNU build ID of an ELF file: the `NT_GNU_BUILD_ID` note of a `PT_NOTE` segment.
/// Reads only the headers and the notes. 64-bit little-endian ELF only; else `None`.
pub(crate) fn read_build_id(path: &str) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let mut hdr = [0u8; 64];
    f.read_exact(&mut hdr).ok()?;
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if hdr[..4] != *b"\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let phoff = u64::from_le_bytes(hdr[32..40].try_into().ok()?);
    let phentsize = usize::from(u16_at(&hdr, 54));
    let phnum = usize::from(u16_at(&hdr, 56));
    if phentsize < 56 || phnum == 0 || phnum > 4096 {
        return None;
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut ph).ok()?;
    for e in ph.chunks_exact(phentsize) {
        const PT_NOTE: u32 = 4;
        if u32::from_le_bytes(e[0..4].try_into().ok()?) != PT_NOTE {
            continue;
        }
        let off = u64::from_le_bytes(e[8..16].try_into().ok()?);
        let size = u64::from_le_bytes(e[32..40].try_into().ok()?);
        if size > 1 << 20 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off)).ok()?;
        f.read_exact(&mut notes).ok()?;
        if let Some(id) = gnu_build_id(&notes) {
            return Some(id);
        }
    }
    None
}

/// Finds the `GNU` note of type 3 (`NT_GNU_BUILD_ID`) in a note segment's bytes.
pub(crate) fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let namesz = u32::from_le_bytes(notes[0..4].try_into().ok()?) as usize;
        let descsz = u32::from_le_bytes(notes[4..8].try_into().ok()?) as usize;
        let kind = u32::from_le_bytes(notes[8..12].try_into().ok()?);
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(align4(namesz))?;
        let desc_end = desc_start.checked_add(descsz)?;
        if desc_end > notes.len() || name_end > notes.len() {
            return None;
        }
        if kind == 3 && &notes[12..name_end] == b"GNU\0" && descsz > 0 {
            return Some(
                notes[desc_start..desc_end]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            );
        }
        notes = notes.get(align4(desc_end)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_executable_file_mappings() {
        let maps = "\
55d0c0a00000-55d0c0a20000 r--p 00000000 08:01 123 /usr/bin/app
55d0c0a20000-55d0c0b00000 r-xp 00020000 08:01 123 /usr/bin/app
7ffd1c5f0000-7ffd1c5f2000 r-xp 00000000 00:00 0 [vdso]
7f00aa000000-7f00aa100000 r-xp 00001000 08:01 77 /tmp/my lib.so (deleted)
7f00ab000000-7f00ab100000 rw-p 00000000 00:00 0
";
        let m = parse_maps(maps);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].start, 0x55d0_c0a2_0000);
        assert_eq!(m[0].limit, 0x55d0_c0b0_0000);
        assert_eq!(m[0].offset, 0x20000);
        assert_eq!(m[0].path, "/usr/bin/app");
        assert_eq!(m[1].path, "/tmp/my lib.so");
    }

    #[test]
    fn finds_the_gnu_note_among_others() {
        let mut notes = Vec::new();
        // An ABI-tag note first (type 1), then the build ID (type 3).
        notes.extend(4u32.to_le_bytes());
        notes.extend(16u32.to_le_bytes());
        notes.extend(1u32.to_le_bytes());
        notes.extend(b"GNU\0");
        notes.extend([0u8; 16]);
        notes.extend(4u32.to_le_bytes());
        notes.extend(4u32.to_le_bytes());
        notes.extend(3u32.to_le_bytes());
        notes.extend(b"GNU\0");
        notes.extend([0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(gnu_build_id(&notes).as_deref(), Some("deadbeef"));
        assert_eq!(gnu_build_id(&notes[..20]), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_binary_has_a_build_id_as_readelf_says() {
        // rustc asks the linker for a GNU build ID on Linux; readelf is the reference.
        let exe = std::env::current_exe().unwrap();
        let ours = read_build_id(exe.to_str().unwrap());
        let Ok(out) = std::process::Command::new("readelf")
            .args(["-n"])
            .arg(&exe)
            .output()
        else {
            eprintln!("readelf not found; only checking that a build ID was read");
            assert!(ours.is_some());
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .map(str::to_string);
        assert_eq!(ours, theirs);
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(
            theirs.is_none()
                || executable_mappings()
                    .iter()
                    .any(|m| m.build_id == theirs && m.path.ends_with(name))
        );
    }
}
