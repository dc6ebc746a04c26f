//! Gzip for `.pb.gz` files (`go tool pprof`, Parca and Pyroscope expect profiles gzipped),
//! through `flate2` (pure-Rust backend).

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;

/// Writes `data` gzipped to `w`, at the fastest level, as Go's `runtime/pprof` does:
/// profiles are repetitive and compress well at any level, and the fastest costs a
/// fraction of the default's time.
pub(crate) fn write_gzip<W: Write>(data: &[u8], w: W) -> io::Result<()> {
    let mut enc = GzEncoder::new(w, Compression::fast());
    enc.write_all(data)?;
    enc.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_gzip(data, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let gz = gzip(&data);
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn system_gzip_reads_it() {
        // A real consumer, when the machine has one (gzip is in every Debian base image).
        let Ok(mut child) = Command::new("gzip")
            .args(["-dc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("gzip not found; skipped");
            return;
        };
        let data = b"leakscope gzip check\n".repeat(1000);
        let gz = gzip(&data);
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&gz));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
