//! The objects loaded in the process (the executable, shared libraries, the vDSO) with
//! their unwind sections read in place from memory, for the CPU sampler's unwinder.
//!
//! Found with `dl_iterate_phdr` (cold side: it takes the loader's lock) when a profile
//! starts. Each object's `.eh_frame_hdr` is its `PT_GNU_EH_FRAME` segment; `.eh_frame`
//! starts where the header's pointer says and is handed out up to the end of the
//! `PT_LOAD` segment that holds it (its exact end is not recorded, and the unwinder only
//! reads the records the header's table points to). A shared library is pinned with
//! `dlopen(RTLD_NOLOAD)` while its bytes are in use, so a `dlclose` elsewhere cannot unmap
//! them under a walk.

use std::ffi::{c_int, c_void, CStr, CString};
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A loaded object and its unwind sections.
pub(crate) struct LoadedObject {
    /// The path the loader knows it by (empty for the executable).
    pub(crate) name: String,
    /// Load bias: actual address minus the address the file states.
    pub(crate) bias: u64,
    /// Actual addresses spanned by its `PT_LOAD` segments.
    pub(crate) range: Range<u64>,
    /// `.eh_frame_hdr`: its stated address and bytes.
    pub(crate) eh_frame_hdr: Option<(u64, MappedBytes)>,
    /// `.eh_frame`: its stated address and bytes (to the end of its segment).
    pub(crate) eh_frame: Option<(u64, MappedBytes)>,
}

/// Bytes of a loaded object's mapped segment, valid while the value (and so the pin on
/// the object) lives.
#[derive(Clone)]
pub(crate) struct MappedBytes {
    ptr: usize,
    len: usize,
    _pin: Arc<Pin>,
}

impl Deref for MappedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies inside a readable `PT_LOAD` segment of an object
        // that stays loaded while `_pin` lives (the executable and the vDSO always do;
        // a library holds a `dlopen` reference); segments are never written after
        // relocation, and `.eh_frame` lies in a read-only one.
        unsafe { std::slice::from_raw_parts(std::ptr::with_exposed_provenance(self.ptr), self.len) }
    }
}

/// A reference that keeps a shared library loaded (`dlclose` when dropped); none for the
/// executable and the vDSO, which are never unloaded.
struct Pin(usize);

impl Drop for Pin {
    fn drop(&mut self) {
        if self.0 != 0 {
            // SAFETY: a handle returned by `dlopen`, closed once.
            unsafe { libc::dlclose(self.0 as *mut c_void) };
        }
    }
}

/// One object as `dl_iterate_phdr` reports it: name, bias, and program headers
/// `(type, flags, vaddr, memsz)`.
struct Raw {
    name: Vec<u8>,
    bias: u64,
    headers: Vec<(u32, u32, u64, u64)>,
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the `&mut Vec<Raw>` passed by `loaded_objects`, used only here
    // while `dl_iterate_phdr` runs; `info` points to the loader's description of one
    // object, valid during the callback.
    let (out, info) = unsafe { (&mut *(data as *mut Vec<Raw>), &*info) };
    let name = if info.dlpi_name.is_null() {
        Vec::new()
    } else {
        // SAFETY: a NUL-terminated string owned by the loader, copied during the callback.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_bytes()
            .to_vec()
    };
    let headers = (0..usize::from(info.dlpi_phnum))
        .map(|i| {
            // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
            let h = unsafe { &*info.dlpi_phdr.add(i) };
            (h.p_type, h.p_flags, h.p_vaddr, h.p_memsz)
        })
        .collect();
    out.push(Raw {
        name,
        bias: info.dlpi_addr,
        headers,
    });
    0
}

/// The objects loaded now, with their unwind sections. Cold: takes the loader's lock and
/// allocates.
pub(crate) fn loaded_objects() -> Vec<LoadedObject> {
    let mut raw: Vec<Raw> = Vec::new();
    // SAFETY: `collect` matches the callback type and only uses `raw` through `data`,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(collect), &mut raw as *mut Vec<Raw> as *mut c_void) };
    raw.into_iter().filter_map(object).collect()
}

/// `PT_LOAD`, `PT_GNU_EH_FRAME`, `PF_R`.
const PT_LOAD: u32 = 1;
const PF_R: u32 = 4;

fn object(raw: Raw) -> Option<LoadedObject> {
    let loads: Vec<Range<u64>> = raw
        .headers
        .iter()
        .filter(|h| h.0 == PT_LOAD)
        .map(|h| h.2..h.2.saturating_add(h.3))
        .collect();
    let start = loads.iter().map(|r| r.start).min()?;
    let end = loads.iter().map(|r| r.end).max()?;
    let name = String::from_utf8_lossy(&raw.name).into_owned();
    let mut obj = LoadedObject {
        name,
        bias: raw.bias,
        range: raw.bias.wrapping_add(start)..raw.bias.wrapping_add(end),
        eh_frame_hdr: None,
        eh_frame: None,
    };
    let Some(&(_, _, hdr_vaddr, hdr_size)) =
        raw.headers.iter().find(|h| h.0 == libc::PT_GNU_EH_FRAME)
    else {
        return Some(obj);
    };
    // The segment (readable, loaded) that holds an address, as a stated range.
    let segment_of = |vaddr: u64| {
        raw.headers
            .iter()
            .filter(|h| h.0 == PT_LOAD && h.1 & PF_R != 0)
            .map(|h| h.2..h.2.saturating_add(h.3))
            .find(|r| r.contains(&vaddr))
    };
    let hdr_segment = segment_of(hdr_vaddr)?;
    if hdr_size < 8 || hdr_vaddr.saturating_add(hdr_size) > hdr_segment.end {
        return Some(obj);
    }
    let Some(pin) = pin(&raw.name) else {
        return Some(obj);
    };
    let pin = Arc::new(pin);
    let bytes = |vaddr: u64, len: u64| MappedBytes {
        ptr: raw.bias.wrapping_add(vaddr) as usize,
        len: len as usize,
        _pin: Arc::clone(&pin),
    };
    let hdr = bytes(hdr_vaddr, hdr_size);
    let eh_frame = eh_frame_address(&hdr, raw.bias.wrapping_add(hdr_vaddr))
        .map(|actual| actual.wrapping_sub(raw.bias))
        .and_then(|vaddr| Some((vaddr, segment_of(vaddr)?)))
        .map(|(vaddr, seg)| (vaddr, bytes(vaddr, seg.end - vaddr)));
    obj.eh_frame_hdr = Some((hdr_vaddr, hdr));
    obj.eh_frame = eh_frame;
    Some(obj)
}

/// A reference keeping the object named `name` loaded: `dlopen(RTLD_NOLOAD)` for a
/// library; none needed for the executable (empty name) or the vDSO. `None` if a library
/// cannot be pinned (its unwind sections are then not used).
fn pin(name: &[u8]) -> Option<Pin> {
    if name.is_empty() || name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
        return Some(Pin(0));
    }
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated path; RTLD_NOLOAD only takes a reference to an
    // object already loaded (null if it is not).
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    (!h.is_null()).then(|| Pin(h as usize))
}

/// The actual address of `.eh_frame`, from the `eh_frame_ptr` field of an
/// `.eh_frame_hdr` at actual address `hdr_addr`.
fn eh_frame_address(hdr: &[u8], hdr_addr: u64) -> Option<u64> {
    const DW_EH_PE_OMIT: u8 = 0xff;
    let (&version, &enc) = (hdr.first()?, hdr.get(1)?);
    if version != 1 || enc == DW_EH_PE_OMIT {
        return None;
    }
    let field = hdr.get(4..)?;
    let value: u64 = match enc & 0x0f {
        0x03 => u64::from(u32::from_le_bytes(field.get(..4)?.try_into().ok()?)),
        0x0b => i64::from(i32::from_le_bytes(field.get(..4)?.try_into().ok()?)) as u64,
        0x04 | 0x0c | 0x00 => u64::from_le_bytes(field.get(..8)?.try_into().ok()?),
        _ => return None,
    };
    match enc & 0x70 {
        0x00 => Some(value),
        // pc-relative: to the field itself, 4 bytes into the header.
        0x10 => Some(hdr_addr.wrapping_add(4).wrapping_add(value)),
        // data-relative: to the header's start.
        0x30 => Some(hdr_addr.wrapping_add(value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_and_libc_have_unwind_sections() {
        let objects = loaded_objects();
        let here = the_executable_and_libc_have_unwind_sections as fn() as usize as u64;
        let exe = objects
            .iter()
            .find(|o| o.range.contains(&here))
            .expect("the object holding this function");
        let (hdr_vaddr, hdr) = exe.eh_frame_hdr.as_ref().expect(".eh_frame_hdr");
        assert_eq!(hdr[0], 1, "version 1");
        let (eh_vaddr, eh) = exe.eh_frame.as_ref().expect(".eh_frame");
        assert!(eh.len() > 16 && eh_vaddr != hdr_vaddr);
        let free = libc::free as *const () as usize as u64;
        let libc_obj = objects
            .iter()
            .find(|o| o.range.contains(&free))
            .expect("libc");
        assert!(libc_obj.name.contains("libc"), "{}", libc_obj.name);
        assert!(libc_obj.eh_frame.is_some());
    }

    #[test]
    fn the_header_pointer_encodings() {
        // pcrel|sdata4 = -0x100 from the field at 0x1004.
        let hdr = [1, 0x1b, 0x03, 0x3b, 0x00, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1004 - 0x100));
        let abs = [1, 0x03, 0x03, 0x3b, 0x78, 0x56, 0x34, 0x12];
        assert_eq!(eh_frame_address(&abs, 0), Some(0x1234_5678));
        assert_eq!(eh_frame_address(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0xff, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x1b], 0), None);
    }
}
