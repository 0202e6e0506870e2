//! Output buffers for whole cubes.
//!
//! Reading a cube is dominated by the page faults of its freshly allocated output (a
//! 482×512×31 float32 cube is 7,500 4-KiB pages). numpy asks Linux to back large arrays with
//! transparent huge pages; we do the same, so each fault maps 2 MiB instead of 4 KiB. It is a
//! hint: where the kernel declines, or on other systems, nothing changes but speed.

/// Below this size the hint is not worth a system call.
const HINT_FROM_BYTES: usize = 8 << 20;

/// A zero-filled buffer of `n` values (the zero pages come lazily from the OS, not a memset).
pub fn zeroed_f32(n: usize) -> Vec<f32> {
    let v = vec![0f32; n];
    advise_huge_pages(v.as_ptr().cast(), n * std::mem::size_of::<f32>());
    v
}

/// An empty buffer with room for `n` values, for readers that push.
pub fn with_capacity_f32(n: usize) -> Vec<f32> {
    let v: Vec<f32> = Vec::with_capacity(n);
    advise_huge_pages(v.as_ptr().cast(), n * std::mem::size_of::<f32>());
    v
}

/// Read `n` native-endian f32 values from `file` at byte `offset` straight into the spare
/// capacity of `out` (which must be empty with capacity ≥ n), with no zero-fill and no
/// intermediate buffer: the kernel's copy is the only one.
#[cfg(unix)]
pub fn read_f32_into_spare(file: &std::fs::File, offset: u64, out: &mut Vec<f32>, n: usize) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let total = n.checked_mul(std::mem::size_of::<f32>()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{n} f32 values overflow the address space"))
    })?;
    // Soundness rests on this: pread below writes `total` bytes into `out`'s allocation.
    assert!(out.is_empty() && out.capacity() >= n, "caller gives an empty buffer with room for n values");
    let base = out.as_mut_ptr().cast::<u8>();
    let mut done = 0usize;
    while done < total {
        // SAFETY: `base + done .. base + total` lies inside `out`'s allocation (capacity ≥ n).
        // pread writes through a raw pointer, so no Rust reference to the uninitialised bytes
        // is ever formed; every f32 bit pattern is a valid value.
        let got = unsafe {
            libc::pread(file.as_raw_fd(), base.add(done).cast(), total - done, (offset + done as u64) as libc::off_t)
        };
        match got {
            g if g > 0 => done += g as usize,
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file ended early")),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: all `n` values were written above.
    unsafe { out.set_len(n) };
    Ok(())
}

/// Portable fallback: read through a small buffer and append.
#[cfg(not(unix))]
pub fn read_f32_into_spare(file: &std::fs::File, offset: u64, out: &mut Vec<f32>, n: usize) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut raw = vec![0u8; 1 << 18];
    while out.len() < n {
        let m = (raw.len() / 4).min(n - out.len());
        file.read_exact(&mut raw[..m * 4])?;
        out.extend(raw[..m * 4].chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *const u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < HINT_FROM_BYTES {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: MADV_HUGEPAGE only tells the kernel how to back pages of an allocation we
        // own; it never changes their contents, and a refusal is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *const u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_have_the_asked_size_and_contents() {
        let big = zeroed_f32(3 << 20);
        assert_eq!(big.len(), 3 << 20);
        assert!(big.iter().all(|&v| v == 0.0));
        let mut small = with_capacity_f32(10);
        assert!(small.capacity() >= 10 && small.is_empty());
        small.push(1.0);
        assert_eq!(small, vec![1.0]);
    }

    #[test]
    fn reads_native_floats_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut bytes = vec![7u8; 12];
        bytes.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
        std::fs::write(&p, &bytes).unwrap();
        let file = std::fs::File::open(&p).unwrap();
        let mut out = with_capacity_f32(1000);
        read_f32_into_spare(&file, 12, &mut out, 1000).unwrap();
        assert_eq!(out, values);
        let mut short = with_capacity_f32(1001);
        assert!(read_f32_into_spare(&file, 12, &mut short, 1001).is_err());
        // a count whose byte size overflows is an error, not a wrapped (too small) read
        let mut none = Vec::new();
        let e = read_f32_into_spare(&file, 0, &mut none, usize::MAX / 2).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}
