//! A gzip member (RFC 1952) around a raw deflate stream from `miniz_oxide`, for
//! `.pb.gz` files (`go tool pprof` expects profiles gzipped).

/// `data` as a complete gzip file.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, 6);
    let mut out = Vec::with_capacity(deflated.len() + 18);
    // ID1 ID2, CM = deflate, FLG = 0, MTIME = 0 (unknown), XFL = 0, OS = 255 (unknown).
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes()); // ISIZE: length mod 2^32
    out
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as gzip uses.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    #[test]
    fn crc_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trips_through_inflate() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let gz = gzip(&data);
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        let body = &gz[10..gz.len() - 8];
        let back = miniz_oxide::inflate::decompress_to_vec(body).unwrap();
        assert_eq!(back, data);
        let tail = &gz[gz.len() - 8..];
        assert_eq!(
            u32::from_le_bytes(tail[..4].try_into().unwrap()),
            crc32(&data)
        );
        assert_eq!(u32::from_le_bytes(tail[4..].try_into().unwrap()), 100_000);
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
            eprintln!("gzip not installed: checked by round_trips_through_inflate only");
            return;
        };
        let data = b"leakscope pprof bytes ".repeat(1000);
        child.stdin.take().unwrap().write_all(&gzip(&data)).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
