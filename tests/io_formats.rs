//! Non-ENVI formats against fixtures written by other tools (numpy, scipy.io.savemat, h5py,
//! Pillow, tifffile; see scripts/fixtures/arrays.py), round trips through our writers, and
//! bad input.

use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use spectral_studio::io::{self, cave, hdf5, image_file, mat5, npy, Layout, OpenOptions};
use spectral_studio::{Cube, RgbImage};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arrays")
}

#[derive(serde::Deserialize)]
struct Expectation {
    file: String,
    kind: String,
    key: Option<String>,
    #[serde(default)]
    layout: Option<String>,
    #[serde(default)]
    srgb: bool,
    shape: Vec<usize>,
    values: Vec<f64>,
    wavelengths: Option<Vec<f32>>,
    tol: f64,
}

fn expectations() -> Vec<Expectation> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

/// Every value of `got` (bands/channels, rows, cols) against the expectation.
fn check_values(e: &Expectation, got: &Array3<f32>) {
    assert_eq!(got.shape(), e.shape.as_slice(), "{}: shape", e.file);
    let expected = Array3::from_shape_vec(got.dim(), e.values.clone()).unwrap();
    for ((idx, &g), &want) in got.indexed_iter().zip(expected.iter()) {
        let tol = e.tol.max(1e-6 * want.abs());
        assert!(
            (g as f64 - want).abs() <= tol,
            "{} (srgb {}): value at (band, row, col) {idx:?} is {g}, expected {want}",
            e.file,
            e.srgb
        );
    }
}

#[test]
fn every_fixture_reads_with_every_value_in_place() {
    let mut counts = std::collections::BTreeMap::new();
    for e in expectations() {
        let path = fixtures().join(&e.file);
        *counts.entry(e.kind.clone()).or_insert(0) += 1;
        if e.kind == "rgb" {
            let rgb = io::open_rgb(&path, e.srgb).unwrap_or_else(|err| panic!("{}: {err}", e.file));
            check_values(&e, &rgb.data);
            continue;
        }
        let opts = OpenOptions {
            key: e.key.clone(),
            layout: if e.layout.as_deref() == Some("chw") { Layout::Chw } else { Layout::Hwc },
            ..Default::default()
        };
        let cube = io::open(&path, &opts).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        check_values(&e, &cube.data);
        let want_wl = e.wavelengths.clone().unwrap_or_else(|| spectral_studio::cube::assumed_wavelengths(e.shape[0]));
        assert_eq!(cube.wavelengths, want_wl, "{}: wavelengths", e.file);
        let format = cube.meta.format.clone().unwrap();
        let want_format = match e.kind.as_str() {
            "npy" => "npy",
            "mat5" => "mat-v5",
            "mat73" => "mat-v7.3",
            "cave" => "cave",
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(format, want_format, "{}", e.file);
    }
    // the fixture set is what the script promises
    assert!(counts["npy"] >= 15, "{counts:?}");
    assert!(counts["mat5"] >= 10, "{counts:?}");
    assert!(counts["mat73"] >= 7, "{counts:?}");
    assert!(counts["rgb"] >= 8, "{counts:?}");
    assert_eq!(counts["cave"], 1);
}

#[test]
fn hdf5_signature_is_found_after_the_matlab_userblock() {
    assert!(hdf5::is_hdf5(&fixtures().join("arad_cube_v73.mat")).unwrap());
    assert!(hdf5::is_hdf5(&fixtures().join("plain.h5")).unwrap());
    assert!(!hdf5::is_hdf5(&fixtures().join("ntire2020_cube.mat")).unwrap());
    assert!(hdf5::is_hdf5(&fixtures().join("missing.mat")).is_err());
}

#[test]
fn mat5_lists_every_variable_with_its_class() {
    let vars = mat5::list_variables(&fixtures().join("harvard_ref.mat")).unwrap();
    let names: Vec<String> = vars.iter().map(|v| format!("{}:{}", v.name, v.describe())).collect();
    assert!(names.contains(&"ref:double 3x4x5".to_string()), "{names:?}");
    assert!(names.contains(&"lbl:char 1x7".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("meta:struct")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("cells:cell")), "{names:?}");
}

// ---------- bad input: an error that names the file and the problem ----------

fn open_err(name: &str, opts: &OpenOptions) -> String {
    let path = fixtures().join(name);
    let err = io::open(&path, opts).expect_err(name).to_string();
    let file_name = Path::new(name).file_name().unwrap().to_str().unwrap();
    assert!(err.contains(file_name), "error does not name the file: {err}");
    err
}

fn key(k: &str) -> OpenOptions {
    OpenOptions { key: Some(k.into()), ..Default::default() }
}

#[test]
fn bad_npy_files_are_refused_with_reasons() {
    let e = open_err("bad_truncated.npy", &OpenOptions::default());
    assert!(e.contains("truncated") && e.contains("needs 240 bytes"), "{e}");
    let e = open_err("bad_complex.npy", &OpenOptions::default());
    assert!(e.contains("unsupported dtype '<c8'"), "{e}");
    let e = open_err("bad_1d.npy", &OpenOptions::default());
    assert!(e.contains("3-D") && e.contains("[6]"), "{e}");
}

#[test]
fn bad_mat_files_and_keys_are_refused_with_reasons() {
    let e = open_err("two_arrays.mat", &OpenOptions::default());
    assert!(e.contains("--key") && e.contains("first") && e.contains("second"), "{e}");
    let e = open_err("two_arrays.mat", &key("third"));
    assert!(e.contains("no variable named 'third'") && e.contains("first (single 3x4x5)"), "{e}");
    let e = open_err("two_arrays_v73.mat", &key("z"));
    assert!(e.contains("no variable named 'z'") && e.contains("x (") && e.contains("y ("), "{e}");
    let e = open_err("harvard_ref.mat", &key("lbl"));
    assert!(e.contains("'lbl'") && e.contains("char"), "{e}");
    let e = open_err("harvard_ref.mat", &key("meta"));
    assert!(e.contains("'meta'") && e.contains("struct"), "{e}");
    let e = open_err("bad_complex.mat", &OpenOptions::default());
    assert!(e.contains("no 3-D numeric array") && e.contains("complex"), "{e}");
    let e = open_err("bad_complex.mat", &key("cube"));
    assert!(e.contains("complex data are not supported"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("notes.mat");
    std::fs::write(&fake, "just some text, not a MAT-file at all").unwrap();
    let e = io::open(&fake, &OpenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("notes.mat") && e.contains("not a MATLAB v5 MAT-file"), "{e}");

    let bytes = std::fs::read(fixtures().join("harvard_ref.mat")).unwrap();
    let cut = dir.path().join("cut.mat");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = io::open(&cut, &OpenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("cut.mat") && e.contains("truncated"), "{e}");

    let bytes = std::fs::read(fixtures().join("arad_cube_v73.mat")).unwrap();
    let cut = dir.path().join("cut73.mat");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = io::open(&cut, &OpenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("cut73.mat"), "{e}");
}

#[test]
fn missing_cave_band_is_named() {
    let e = open_err("cave/broken_ms", &OpenOptions::default());
    assert!(e.contains("band 07 is missing") && e.contains("_ms_07.png"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    assert!(!cave::is_cave_folder(dir.path()));
    assert!(io::open(dir.path(), &OpenOptions::default()).is_err());
}

#[test]
fn unreadable_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.png");
    std::fs::write(&p, b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let e = io::open_rgb(&p, false).unwrap_err().to_string();
    assert!(e.contains("broken.png") && e.contains("decode"), "{e}");
}

// ---------- round trips through our writers ----------

fn ramp_cube(bands: usize, rows: usize, cols: usize) -> Cube {
    let data = Array3::from_shape_fn((bands, rows, cols), |(b, r, c)| (b * 100 + r * 10 + c) as f32 + 0.25);
    let wl = (0..bands).map(|b| 420.0 + 15.0 * b as f32).collect();
    Cube::new(data, wl).unwrap()
}

#[test]
fn npy_cube_round_trip_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cube = ramp_cube(5, 3, 4);
    let p = dir.path().join("c.npy");
    io::save(&cube, &p).unwrap();
    let back = npy::read_cube(&p, Layout::Hwc).unwrap();
    assert_eq!(back.data, cube.data);
    // written as (rows, cols, bands): read as a plain array it has that shape
    let plain = npy::read_array(&p).unwrap();
    assert_eq!(plain.shape(), &[3, 4, 5]);
    assert_eq!(plain[[2, 3, 4]], 423.25);
    // the header says what numpy expects and the data are 64-byte aligned
    let bytes = std::fs::read(&p).unwrap();
    let header = npy::parse_header(&bytes).unwrap();
    assert_eq!(
        (header.descr(), header.fortran_order, header.data_offset % 64),
        ("<f4".to_string(), false, 0)
    );
    // read as CHW the same bytes are (3 bands, 4 rows, 5 cols)
    assert_eq!(npy::read_cube(&p, Layout::Chw).unwrap().data.dim(), (3, 4, 5));
}

#[test]
fn npy_plain_array_helpers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abundances.npy");
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    npy::write_f32(&p, &[3, 4], &data).unwrap();
    let back = npy::read_array(&p).unwrap();
    assert_eq!(back.shape(), &[3, 4]);
    assert_eq!(back.iter().copied().collect::<Vec<_>>(), data);
    assert!(npy::write_f32(&p, &[5, 4], &data).is_err());
    // a transposed (non-standard layout) array is written in logical order
    let a = ArrayD::from_shape_vec(IxDyn(&[3, 4]), data.clone()).unwrap();
    let t = a.t();
    npy::write_array(&p, &t).unwrap();
    let back = npy::read_array(&p).unwrap();
    assert_eq!(back.shape(), &[4, 3]);
    assert_eq!(back[[3, 1]], a[[1, 3]]);
    // a spectrum: 1-D
    npy::write_f32(&p, &[3], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(npy::read_array(&p).unwrap().shape(), &[3]);
}

#[test]
fn mat_v73_round_trip_in_arad_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cube = ramp_cube(4, 3, 5);
    let p = dir.path().join("out.mat");
    io::save(&cube, &p).unwrap();
    assert!(hdf5::is_hdf5(&p).unwrap());
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[..10], b"MATLAB 7.3");
    // as h5py sees it: cube (bands, cols, rows) float32, bands (1, bands)
    let f = hdf5_pure::File::open(&p).unwrap();
    let ds = f.dataset("cube").unwrap();
    assert_eq!(ds.shape().unwrap(), vec![4, 5, 3]);
    assert_eq!(ds.dtype().unwrap(), hdf5_pure::DType::F32);
    let raw = ds.read_f32().unwrap();
    // h5py index [b, c, r] = MATLAB A(r+1, c+1, b+1) = cube (b, r, c)
    assert_eq!(raw[(2 * 5 + 4) * 3 + 1], cube.data[[2, 1, 4]]);
    assert_eq!(f.dataset("bands").unwrap().shape().unwrap(), vec![1, 4]);
    let back = io::open(&p, &OpenOptions::default()).unwrap();
    assert_eq!(back.data, cube.data);
    assert_eq!(back.wavelengths, cube.wavelengths);
    assert_eq!(back.meta.format.as_deref(), Some("mat-v7.3"));
    // never over the source
    assert!(io::save(&back, &p).is_err());
}

#[test]
fn png_round_trips_8_and_16_bit() {
    let dir = tempfile::tempdir().unwrap();
    let data = Array3::from_shape_fn((3, 4, 6), |(c, r, x)| (c * 24 + r * 6 + x) as f32 / 71.0);
    let rgb = RgbImage::new(data).unwrap();
    let p16 = dir.path().join("a16.png");
    image_file::write_png(&rgb, &p16, true, false).unwrap();
    let back = io::open_rgb(&p16, false).unwrap();
    assert_eq!(back.data.dim(), (3, 4, 6));
    for (a, b) in back.data.iter().zip(rgb.data.iter()) {
        assert!((a - b).abs() <= 0.5 / 65535.0 + 1e-7, "{a} vs {b}");
    }
    let p8 = dir.path().join("a8.png");
    image_file::write_png(&rgb, &p8, false, true).unwrap();
    let back = io::open_rgb(&p8, true).unwrap();
    for (a, b) in back.data.iter().zip(rgb.data.iter()) {
        // sRGB-encoded 8 bit, decoded again: within one 8-bit step of the encoding
        assert!((a - b).abs() < 0.01, "{a} vs {b}");
    }
    let decoded = image_file::decode(&p8).unwrap();
    assert_eq!((decoded.bits, decoded.data.shape()[0]), (8, 3));
}

#[test]
fn cave_folder_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("toy_ms");
    let data = Array3::from_shape_fn((31, 2, 3), |(b, r, c)| (b * 1000 + r * 10 + c) as f32 / 65535.0);
    let cube = Cube::on_default_grid(data).unwrap();
    cave::write(&cube, &scene.join("toy_ms"), "toy").unwrap();
    assert!(cave::is_cave_folder(&scene));
    let back = io::open(&scene, &OpenOptions::default()).unwrap();
    for (a, b) in back.data.iter().zip(cube.data.iter()) {
        assert!((a - b).abs() < 1e-7);
    }
    assert_eq!(back.wavelengths[30], 700.0);
}

// ---------- fuzzing: garbled headers and files never panic ----------

fn valid_npy_header() -> Vec<u8> {
    std::fs::read(fixtures().join("hwc_f32.npy")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn npy_header_parser_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut with_magic = b"\x93NUMPY".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = npy::parse_header(&bytes);
        let _ = npy::parse_header(&with_magic);
    }

    #[test]
    fn npy_header_parser_never_panics_on_garbled_headers(
        edits in proptest::collection::vec((6usize..128, any::<u8>()), 1..6),
        cut in 0usize..400,
    ) {
        let mut bytes = valid_npy_header();
        for (at, b) in edits {
            bytes[at] = b;
        }
        bytes.truncate(cut.max(1));
        if let Ok(h) = npy::parse_header(&bytes) {
            // whatever parses must describe a sane size
            prop_assert!(h.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_some());
        }
    }

    #[test]
    fn npy_text_headers_never_panic(text in "\\{['a-z_:<>|0-9, ()\\[\\]TrueFals]{0,80}\\}?") {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        let _ = npy::parse_header(&bytes);
    }

    #[test]
    fn mat5_parser_never_panics_on_garbled_files(
        edits in proptest::collection::vec((128usize..400, any::<u8>()), 1..4),
        cut in 100usize..2000,
    ) {
        for name in ["harvard_ref.mat", "big_endian.mat", "ntire2020_cube.mat"] {
            let mut bytes = std::fs::read(fixtures().join(name)).unwrap();
            for &(at, b) in &edits {
                if at < bytes.len() {
                    bytes[at] = b;
                }
            }
            bytes.truncate(cut);
            let _ = mat5::parse_variables(&bytes);
        }
    }
}

// ---------- review fixes: placeholders, HDF5 orientation, bombs, RGB .npy ----------

#[test]
fn band_number_placeholder_round_trips_through_mat() {
    let dir = tempfile::tempdir().unwrap();
    let data = Array3::from_shape_fn((5, 3, 4), |(b, r, c)| (b * 100 + r * 10 + c) as f32);
    let cube = Cube::new(data, spectral_studio::cube::band_numbers(5)).unwrap();
    let p = dir.path().join("placeholder.mat");
    io::save(&cube, &p).unwrap();
    let f = hdf5_pure::File::open(&p).unwrap();
    assert!(f.dataset("bands").is_err(), "band numbers must not be stored as 'bands'");
    let back = io::open(&p, &OpenOptions::default()).unwrap();
    assert_eq!(back.wavelengths, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(back.data, cube.data);
}

#[test]
fn plain_hdf5_is_read_in_c_order_with_the_layout() {
    // plain.h5 is h5py (rows 3, cols 4, bands 5), no userblock, no MATLAB_class.
    let p = fixtures().join("plain.h5");
    let hwc = io::open(&p, &OpenOptions::default()).unwrap();
    assert_eq!(hwc.data.dim(), (5, 3, 4));
    // value = band*100 + row*10 + col + 0.5
    assert_eq!(hwc.data[[4, 2, 3]], 423.5);
    assert_eq!(hwc.data[[1, 0, 2]], 102.5);
    // the same dataset as (bands, rows, cols): h5py [i, j, k] is cube (i, j, k)
    let chw = io::open(&p, &OpenOptions { layout: Layout::Chw, ..Default::default() }).unwrap();
    assert_eq!(chw.data.dim(), (3, 4, 5));
    assert_eq!(chw.data[[2, 3, 4]], 423.5);
    assert_eq!(chw.data[[0, 2, 1]], 102.5);
    // a MATLAB_class attribute alone (no userblock) selects MATLAB's orientation
    let m = io::open(fixtures().join("matlab_class_only.h5"), &OpenOptions::default()).unwrap();
    assert_eq!(m.data, hwc.data);
    // and MATLAB files keep it whatever the layout default
    let arad = io::open(fixtures().join("arad_cube_v73.mat"), &OpenOptions::default()).unwrap();
    assert_eq!(arad.data, hwc.data);
}

#[test]
fn hdf5_declared_size_is_checked_before_reading() {
    let e = open_err("bad_huge_shape.h5", &OpenOptions::default());
    assert!(e.contains("declares") && e.contains("100000"), "{e}");
}

/// A MAT v5 file whose one element is zlib data inflating to `zeros` zero bytes after an
/// inner miMATRIX tag that declares `declared` bytes.
fn mat5_bomb(declared: u32, zeros: usize) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tag = 14u32.to_le_bytes().to_vec();
    tag.extend_from_slice(&declared.to_le_bytes());
    z.write_all(&tag).unwrap();
    let block = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len());
        z.write_all(&block[..n]).unwrap();
        left -= n;
    }
    let compressed = z.finish().unwrap();
    let mut bytes = vec![b' '; 128];
    bytes[..19].copy_from_slice(b"MATLAB 5.0 MAT-file");
    bytes[124..126].copy_from_slice(&0x0100u16.to_le_bytes());
    bytes[126..128].copy_from_slice(b"IM");
    bytes.extend_from_slice(&15u32.to_le_bytes());
    bytes.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&compressed);
    bytes
}

#[test]
fn mat5_decompression_bomb_is_refused_before_inflating() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB declared over a stream of 100 zero bytes: more than deflate could ever expand
    // to, so it is refused before anything is inflated
    let p = dir.path().join("bomb.mat");
    std::fs::write(&p, mat5_bomb(64 << 20, 100)).unwrap();
    let start = std::time::Instant::now();
    let e = io::open(&p, &OpenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("bomb.mat") && e.contains("declares 67108864 bytes"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    // 8 MiB of real zeros (about 1000:1, deflate's best) is honest: not called a bomb
    // (it is all zeros, so it then fails as a malformed matrix, not as a bomb)
    let honest = dir.path().join("zeros.mat");
    std::fs::write(&honest, mat5_bomb(8 << 20, 8 << 20)).unwrap();
    let e = io::open(&honest, &OpenOptions::default()).unwrap_err().to_string();
    assert!(!e.contains("decompression bomb") && e.contains("malformed"), "{e}");
    // a lying tag (4 GiB declared over a few bytes) is refused the same way
    std::fs::write(&p, mat5_bomb(u32::MAX, 100)).unwrap();
    let e = io::open(&p, &OpenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("declares 4294967295 bytes"), "{e}");
    // a tag declaring more than the stream holds (within the limit) is a clear error
    std::fs::write(&p, mat5_bomb(4096, 100)).unwrap();
    let e = io::open(&p, &OpenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("inflates to only 100"), "{e}");
}

#[test]
fn rgb_npy_opens_as_an_rgb_image() {
    let dir = tempfile::tempdir().unwrap();
    let data = Array3::from_shape_fn((3, 2, 4), |(c, r, x)| (c * 8 + r * 4 + x) as f32 / 24.0);
    let p = dir.path().join("render.npy");
    npy::write_chw_as_hwc(&p, data.view()).unwrap();
    // written (rows, cols, 3), as render -o x.npy does
    assert_eq!(npy::read_array(&p).unwrap().shape(), &[2, 4, 3]);
    let rgb = io::open_rgb(&p, false).unwrap();
    assert_eq!(rgb.data, data);
    let srgb = io::open_rgb(&p, true).unwrap();
    assert_eq!(srgb.data[[2, 1, 3]], spectral_studio::rgb::srgb_to_linear(data[[2, 1, 3]]));
    match io::open_any(&p, &OpenOptions::default(), false).unwrap() {
        io::Loaded::Rgb(img) => assert_eq!(img.data, data),
        io::Loaded::Cube(_) => panic!("(rows, cols, 3) .npy should open as RGB"),
    }
    // (3, rows, cols) with Chw
    let chw = dir.path().join("chw.npy");
    npy::write_f32(&chw, &[3, 2, 4], data.as_slice().unwrap()).unwrap();
    match io::open_any(&chw, &OpenOptions { layout: Layout::Chw, ..Default::default() }, false).unwrap() {
        io::Loaded::Rgb(img) => assert_eq!(img.data, data),
        io::Loaded::Cube(_) => panic!("(3, rows, cols) .npy with chw should open as RGB"),
    }
    // other shapes are cubes for open_any and an error for open_rgb
    let cube = dir.path().join("cube.npy");
    io::save(&ramp_cube(5, 2, 3), &cube).unwrap();
    assert!(matches!(io::open_any(&cube, &OpenOptions::default(), false).unwrap(), io::Loaded::Cube(_)));
    let e = io::open_rgb(&cube, false).unwrap_err().to_string();
    assert!(e.contains("cube.npy") && e.contains("(rows, cols, 3)"), "{e}");
}

#[test]
fn chw_arrays_are_written_as_hwc_from_any_view() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.npy");
    // a (channels, rows, cols) view that is not in standard layout
    let base = Array3::from_shape_fn((4, 3, 2), |(a, b, c)| (a * 100 + b * 10 + c) as f32);
    let view = base.view().permuted_axes([2, 1, 0]); // (2 channels, 3 rows, 4 cols)
    npy::write_chw_as_hwc(&p, view).unwrap();
    let back = npy::read_array(&p).unwrap();
    assert_eq!(back.shape(), &[3, 4, 2]);
    for ((ch, r, c), &v) in view.indexed_iter() {
        assert_eq!(back[[r, c, ch]], v);
    }
}
