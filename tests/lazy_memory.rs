//! A cube eight times larger than a memory cap opens, browses and measures within it: the
//! heap's peak is counted by this binary's allocator (one test, so nothing else allocates
//! meanwhile) and the process's peak resident memory is read from /proc on Linux. The file is
//! sparse, so it costs no disk.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use spectral_studio::app::document;
use spectral_studio::engine::JobContext;
use spectral_studio::io::{self, source, OpenOptions};
use spectral_studio::Rect;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;

/// Peak resident memory of this process (VmHWM), bytes; None off Linux.
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn a_cube_larger_than_the_cap_opens_browses_and_measures_within_it() {
    // 64 bands × 4096 rows × 2048 cols of int16, BIL: 1 GiB on disk, 2 GiB as f32.
    let (bands, rows, cols) = (64usize, 4096usize, 2048usize);
    let cap: u64 = 128 << 20;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flight.bil");
    let file = std::fs::File::create(&data).unwrap();
    file.set_len((bands * rows * cols * 2) as u64).unwrap();
    // A few known samples in the sparse file: pixel (3000, 1500) holds b + 1 in band b, and the
    // last sample of the file is -7.
    use std::os::unix::fs::FileExt;
    for b in 0..bands {
        let at = (((3000 * bands + b) * cols + 1500) * 2) as u64;
        file.write_all_at(&((b + 1) as i16).to_le_bytes(), at).unwrap();
    }
    file.write_all_at(&(-7i16).to_le_bytes(), (bands * rows * cols * 2 - 2) as u64).unwrap();
    drop(file);
    let wl: Vec<String> = (0..bands).map(|b| (400 + 10 * b).to_string()).collect();
    std::fs::write(
        dir.path().join("flight.hdr"),
        format!("ENVI\nsamples = {cols}\nlines = {rows}\nbands = {bands}\nheader offset = 0\ndata type = 2\ninterleave = bil\nbyte order = 0\nwavelength = {{{}}}\n", wl.join(", ")),
    )
    .unwrap();
    let rss_before = peak_rss();
    let heap_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(heap_before, Ordering::Relaxed);

    // The studio's loader opens it lazily (it is over the cap) with an overview of every band.
    let loaded = document::load_file(&data, cap, &JobContext::silent()).unwrap();
    let document::LayerData::Large(large) = &loaded.data else { panic!("a cube over the cap must open lazily") };
    assert_eq!(loaded.data.rows_cols(), (rows, cols));
    assert!(large.overview.cube.rows() * large.overview.cube.cols() <= source::OVERVIEW_PIXELS);
    // a spectrum from one strided read, a full-resolution tile, region statistics, info
    let spectrum = source::spectrum(&*large.source, 3000, 1500).unwrap();
    assert_eq!(spectrum, (1..=bands).map(|b| b as f32).collect::<Vec<_>>());
    let tile = source::window(&*large.source, Rect { row: 2990, col: 1490, height: 256, width: 256 }).unwrap();
    assert_eq!(tile.data[[5, 10, 10]], 6.0);
    let roi = source::band_stats(&*large.source, Some(Rect { row: 2999, col: 1499, height: 3, width: 3 }), &JobContext::silent()).unwrap();
    assert!((roi.bands[9].mean - 10.0 / 9.0).abs() < 1e-9, "{}", roi.bands[9].mean);
    let whole = source::band_stats(&*io::open_source(&data, &OpenOptions::default()).unwrap(), None, &JobContext::silent()).unwrap();
    assert_eq!((whole.all.min, whole.all.max), (-7.0, bands as f32));
    assert_eq!(whole.bands[bands - 1].min, -7.0);
    drop(tile);

    let heap_peak = PEAK.load(Ordering::Relaxed) - heap_before;
    let file_bytes = (bands * rows * cols * 2) as f64;
    eprintln!(
        "file {:.0} MiB, f32 {:.0} MiB, cap {} MiB: heap peak {:.1} MiB, resident peak {:?} MiB (before {:?} MiB)",
        file_bytes / MIB as f64,
        2.0 * file_bytes / MIB as f64,
        cap >> 20,
        heap_peak as f64 / MIB as f64,
        peak_rss().map(|b| b / MIB),
        rss_before.map(|b| b / MIB)
    );
    assert!(heap_peak < cap as usize, "heap peak {heap_peak} bytes is over the {cap}-byte cap");
    if let Some(rss) = peak_rss() {
        assert!(rss < cap as usize + 64 * MIB, "resident peak {} MiB", rss / MIB);
    }
}
