//! ENVI reading against files written by Spectral Python (scripts/fixtures/envi.py), the real
//! Fenix cube from the napari-hippo wheel, bad inputs, round trips and a header fuzz.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;
use spectral_studio::io::envi::{self, DataType, Interleave, WavelengthOrigin};
use spectral_studio::io::{self, Format, OpenOptions, Subset};
use spectral_studio::Cube;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envi").join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn floats(v: &Value) -> Vec<Option<f32>> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().map(|f| f as f32)).collect()
}

fn shape(v: &Value) -> Vec<usize> {
    v.as_array().expect("shape").iter().map(|x| x.as_u64().expect("dim") as usize).collect()
}

/// Every value equal (NaN where expected is null), in (bands, rows, cols) order.
fn assert_values(cube: &Cube, want: &Value, name: &str) {
    let want = floats(want);
    let got: Vec<f32> = cube.data.iter().copied().collect();
    assert_eq!(got.len(), want.len(), "{name}: value count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        match w {
            None => assert!(g.is_nan(), "{name}[{i}]: got {g}, want NaN"),
            Some(w) => assert_eq!(g.to_bits(), w.to_bits(), "{name}[{i}]: got {g}, want {w}"),
        }
    }
}

const SPY_CUBES: [&str; 12] = [
    "u8_bsq_le",
    "i16_bil_be",
    "u16_bip_le",
    "i32_bsq_be",
    "u32_bil_le",
    "f32_bip_be",
    "f32_bsq_le",
    "f64_bil_be",
    "i64_bip_le",
    "u64_bsq_be",
    "i16_bip_offset",
    "u16_bsq_scaled",
];

#[test]
fn every_spy_cube_reads_value_for_value() {
    let all = expected();
    for name in SPY_CUBES {
        let want = &all[name];
        // Given as the header and as the data file: the same cube.
        for path in [fixture(&format!("{name}.hdr")), fixture(&format!("{name}.img"))] {
            let cube = envi::read(&path, &Subset::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cube.data.shape(), shape(&want["shape"]).as_slice(), "{name}");
            assert_values(&cube, &want["values"], name);
            let wl = floats(&want["wavelengths"]);
            assert_eq!(cube.wavelengths.len(), wl.len(), "{name}");
            for (g, w) in cube.wavelengths.iter().zip(&wl) {
                assert!((g - w.unwrap()).abs() < 1e-3, "{name}: wavelength {g} vs {w:?}");
            }
            match want["fwhm"].as_array() {
                Some(_) => {
                    let fwhm = cube.fwhm.as_ref().expect("fwhm");
                    for (g, w) in fwhm.iter().zip(floats(&want["fwhm"])) {
                        assert!((g - w.unwrap()).abs() < 1e-4, "{name}: fwhm {g}");
                    }
                }
                None => assert!(cube.fwhm.is_none(), "{name}"),
            }
            assert_eq!(cube.meta.scale, want["scale"].as_f64().map(|s| s as f32), "{name}");
            if let Some(d) = want["description"].as_str() {
                // Guessed or placeholder wavelengths add a note after the header's text.
                let got = cube.meta.description.as_deref().unwrap_or("");
                assert!(got.starts_with(d), "{name}: {got}");
            }
        }
    }
}

#[test]
fn header_details_are_typed() {
    let h = envi::read_header(&fixture("i32_bsq_be.img")).unwrap();
    assert_eq!((h.samples, h.lines, h.bands), (4, 3, 5));
    assert_eq!(h.data_type, DataType::I32);
    assert_eq!(h.interleave, Interleave::Bsq);
    assert_eq!(h.wavelength_origin, WavelengthOrigin::Converted);
    let h = envi::read_header(&fixture("f64_bil_be.hdr")).unwrap();
    assert_eq!(h.wavelength_origin, WavelengthOrigin::AssumedMicrometers);
    let h = envi::read_header(&fixture("f32_bsq_le.hdr")).unwrap();
    assert_eq!(h.wavelength_origin, WavelengthOrigin::BandNumbers);
    let (cube, _) = envi::read_with_header(&fixture("f32_bsq_le.hdr"), &Subset::default()).unwrap();
    assert!(cube.meta.description.unwrap().contains("band numbers"));
    let h = envi::read_header(&fixture("i16_bip_offset.hdr")).unwrap();
    assert_eq!(h.header_offset, 96);
}

#[test]
fn subsets_read_only_the_window() {
    for name in ["u16_bip_le", "i16_bil_be", "i32_bsq_be", "i16_bip_offset"] {
        let whole = envi::read(&fixture(&format!("{name}.hdr")), &Subset::default()).unwrap();
        let subset = Subset { rows: Some(1..3), cols: Some(2..4), bands: Some(1..4) };
        let part = envi::read(&fixture(&format!("{name}.hdr")), &subset).unwrap();
        assert_eq!(part.data.shape(), &[3, 2, 2], "{name}");
        assert_eq!(part.data, whole.data.slice(ndarray::s![1..4, 1..3, 2..4]), "{name}");
        assert_eq!(part.wavelengths, whole.wavelengths[1..4].to_vec());
        assert_eq!(part.data.len(), 12);
    }
    let bad = Subset { rows: Some(2..4), ..Subset::default() };
    let err = envi::read(&fixture("u8_bsq_le.hdr"), &bad).unwrap_err().to_string();
    assert!(err.contains("u8_bsq_le.hdr") && err.contains("rows subset 2..4"), "{err}");
}

#[test]
fn spectral_library_reads_names_and_spectra() {
    let want = &expected()["library"];
    let lib = envi::read_library(&fixture("library.sli")).unwrap();
    let names: Vec<&str> = want["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(lib.names, names);
    assert_eq!(lib.spectra.shape(), shape(&want["shape"]).as_slice());
    let spectra: Vec<f32> = lib.spectra.iter().copied().collect();
    assert_eq!(spectra, floats(&want["spectra"]).into_iter().map(Option::unwrap).collect::<Vec<_>>());
    assert!((lib.wavelengths[1] - 500.5).abs() < 1e-3);
    assert_eq!(lib.meta.description.as_deref(), Some("SPy library fixture"));

    assert_eq!(io::detect(&fixture("library.hdr")).unwrap(), Format::EnviLibrary);
    assert_eq!(envi::detect_kind(&fixture("library.sli")).unwrap(), Format::EnviLibrary);
    assert_eq!(envi::detect_kind(&fixture("u8_bsq_le.img")).unwrap(), Format::Envi);
    // As a cube: (channels, spectra, 1).
    let cube = envi::read(&fixture("library.hdr"), &Subset::default()).unwrap();
    assert_eq!(cube.data.shape(), &[5, 3, 1]);
    assert_eq!(cube.spectrum(1, 0), lib.spectra.row(1).to_vec());
    assert!(envi::read_library(&fixture("u8_bsq_le.hdr"))
        .unwrap_err()
        .to_string()
        .contains("not an ENVI spectral library"));
}

#[test]
fn fenix_real_world_cube() {
    let want = &expected()["fenix"];
    let (cube, header) = envi::read_with_header(&fixture("fenix.hdr"), &Subset::default()).unwrap();
    assert_eq!(cube.data.shape(), shape(&want["shape"]).as_slice());
    assert_eq!(cube.meta.scale, Some(65535.0));
    assert_eq!(want["scale"].as_f64(), Some(65535.0));
    let first = want["wavelength_first"].as_f64().unwrap() as f32;
    let last = want["wavelength_last"].as_f64().unwrap() as f32;
    assert!((cube.wavelengths[0] - first).abs() < 1e-3 && (cube.wavelengths[449] - last).abs() < 1e-3);
    assert!((cube.fwhm.as_ref().unwrap()[0] - want["fwhm_first"].as_f64().unwrap() as f32).abs() < 1e-5);
    let default_bands: Vec<usize> = shape(&want["default_bands"]);
    assert_eq!(header.default_bands, Some(default_bands));
    for probe in want["probes"].as_array().unwrap() {
        let (r, c, b) =
            (probe["row"].as_u64().unwrap(), probe["col"].as_u64().unwrap(), probe["band"].as_u64().unwrap());
        let got = cube.data[[b as usize, r as usize, c as usize]];
        let raw = probe["raw"].as_u64().unwrap() as f32;
        assert_eq!(got, probe["value"].as_f64().unwrap() as f32, "probe {probe}");
        assert_eq!(got, raw / 65535.0, "probe {probe}");
    }
    let stats = cube.stats();
    assert_eq!(stats.non_finite as u64, want["ignored"].as_u64().unwrap(), "zeros (the ignore value) become NaN");
    assert!((stats.mean - want["mean"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(stats.max, want["max"].as_f64().unwrap() as f32);
    // Through the dispatcher, with a spectral subset near the SWIR join.
    let opts = OpenOptions { subset: Subset { bands: Some(170..180), ..Subset::default() }, ..OpenOptions::default() };
    let part = io::open(fixture("fenix.dat"), &opts).unwrap();
    assert_eq!(part.data, cube.data.slice(ndarray::s![170..180, .., ..]));
    assert_eq!(part.meta.format.as_deref(), Some("envi"));
}

#[test]
fn block1_bip_u8_real_world() {
    let want = &expected()["block1"];
    let cube = envi::read(&fixture("block1.hdr"), &Subset::default()).unwrap();
    assert_eq!(cube.data.shape(), shape(&want["shape"]).as_slice());
    assert_values(&cube, &want["values"], "block1");
}

#[test]
fn write_round_trips_and_spy_layout_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut cube = envi::read(&fixture("f32_bip_be.hdr"), &Subset::default()).unwrap();
    cube.meta.source = None;
    cube.meta.description = Some("with {braces}".into());
    let out = dir.path().join("copy.hdr");
    envi::write(&cube, &out).unwrap();
    assert!(dir.path().join("copy.img").is_file());
    let back = envi::read(&out, &Subset::default()).unwrap();
    assert_eq!(back.data, cube.data);
    assert_eq!(back.wavelengths, cube.wavelengths);
    assert_eq!(back.fwhm, cube.fwhm);
    assert_eq!(back.meta.description.as_deref(), Some("with (braces)"));
    let h = envi::read_header(&out).unwrap();
    assert_eq!((h.data_type, h.interleave), (DataType::F32, Interleave::Bsq));
    // Saved by data-file name too, through io::save.
    io::save(&cube, dir.path().join("other.img")).unwrap();
    assert_eq!(envi::read(&dir.path().join("other.hdr"), &Subset::default()).unwrap().data, cube.data);
    // Never over its own source.
    let src = envi::read(&out, &Subset::default()).unwrap();
    assert!(envi::write(&src, &dir.path().join("copy.img")).is_err());
}

#[test]
fn band_number_placeholder_round_trips_as_index() {
    // A cube without wavelengths (band numbers 1..5) must not come back as µm → 1000.. nm.
    let dir = tempfile::tempdir().unwrap();
    let data = ndarray::Array3::from_shape_fn((5, 2, 3), |(b, r, c)| (b * 100 + r * 10 + c) as f32);
    let cube = Cube::new(data, spectral_studio::cube::band_numbers(5)).unwrap();
    let out = dir.path().join("placeholder.hdr");
    io::save(&cube, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("wavelength units = Index"), "{text}");
    let (back, header) = envi::read_with_header(&out, &Subset::default()).unwrap();
    assert_eq!(back.wavelengths, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(header.wavelength_origin, WavelengthOrigin::Index);
    assert_eq!(back.data, cube.data);
    // real wavelengths still say Nanometers
    let mut real = cube.clone();
    real.wavelengths = vec![400.0, 450.0, 500.0, 550.0, 600.0];
    let out = dir.path().join("real.hdr");
    io::save(&real, &out).unwrap();
    assert!(std::fs::read_to_string(&out).unwrap().contains("wavelength units = Nanometers"));
    assert_eq!(envi::read(&out, &Subset::default()).unwrap().wavelengths, real.wavelengths);
}

/// Copy a fixture pair into a temp dir, edit its header, and return the error of reading it.
fn error_after_edit(name: &str, edit: impl Fn(String) -> String, data_edit: impl Fn(&mut Vec<u8>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("bad.hdr");
    let img = dir.path().join("bad.img");
    std::fs::write(&hdr, edit(std::fs::read_to_string(fixture(&format!("{name}.hdr"))).unwrap())).unwrap();
    let mut data = std::fs::read(fixture(&format!("{name}.img"))).unwrap();
    data_edit(&mut data);
    std::fs::write(&img, data).unwrap();
    let err = envi::read(&hdr, &Subset::default()).expect_err("bad input must fail").to_string();
    assert!(err.contains("bad.hdr") || err.contains("bad.img"), "error names no file: {err}");
    err
}

#[test]
fn bad_inputs_name_the_file_and_the_problem() {
    let keep = |_: &mut Vec<u8>| {};
    let e = error_after_edit("i16_bil_be", |h| h.replace("bands = 5\n", ""), keep);
    assert!(e.contains("missing required key 'bands'"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("samples = 4", "samples = 3"), keep);
    assert!(e.contains("size disagrees with the header: expected 90 bytes") && e.contains("file has 120"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h, |d| d.truncate(100));
    assert!(e.contains("truncated: expected 120 bytes, file has 100"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("data type = 2", "data type = 7"), keep);
    assert!(e.contains("header line 9: unknown data type 7"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("data type = 2", "data type = 6"), keep);
    assert!(e.contains("complex data is not supported"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("interleave = bil", "interleave = bis"), keep);
    assert!(e.contains("header line 10: unknown interleave 'bis'"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("interleave = bil\n", ""), keep);
    assert!(e.contains("missing required key 'interleave'"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("{ 450.0 ,", "{"), keep);
    assert!(e.contains("4 wavelength values given for 5 bands"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("lines = 3", "lines = three"), keep);
    assert!(e.contains("header line 5: lines = three: expected a whole number"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("ENVI", "ENVY"), keep);
    assert!(e.contains("not an ENVI header"), "{e}");
    let e = error_after_edit("i16_bil_be", |h| h.replace("byte order = 1\n", ""), keep);
    assert!(e.contains("missing required key 'byte order'"), "{e}");

    // A data file with no header, and a header with no data file.
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("lone.img");
    std::fs::write(&lone, [0u8; 8]).unwrap();
    let e = envi::read(&lone, &Subset::default()).unwrap_err().to_string();
    assert!(e.contains("lone.img") && e.contains("no ENVI header found"), "{e}");
    let hdr = dir.path().join("orphan.hdr");
    std::fs::copy(fixture("u8_bsq_le.hdr"), &hdr).unwrap();
    let e = envi::read(&hdr, &Subset::default()).unwrap_err().to_string();
    assert!(e.contains("orphan.hdr") && e.contains("no data file found"), "{e}");
}

#[test]
fn header_lookup_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.dat"), b"").unwrap();
    std::fs::write(d.join("a.hdr"), b"ENVI\n").unwrap();
    assert_eq!(envi::header_for(&d.join("a.dat")), Some(d.join("a.hdr")));
    std::fs::write(d.join("a.dat.hdr"), b"ENVI\n").unwrap();
    assert_eq!(envi::header_for(&d.join("a.dat")), Some(d.join("a.dat.hdr")));
    assert_eq!(envi::data_file_for(&d.join("a.dat.hdr")).unwrap(), d.join("a.dat"));
    assert_eq!(envi::data_file_for(&d.join("a.hdr")).unwrap(), d.join("a.dat"));
    std::fs::write(d.join("b"), b"").unwrap();
    std::fs::write(d.join("b.hdr"), b"ENVI\n").unwrap();
    assert_eq!(envi::header_for(&d.join("b")), Some(d.join("b.hdr")));
    assert_eq!(envi::data_file_for(&d.join("b.hdr")).unwrap(), d.join("b"));
    assert_eq!(envi::header_for(&d.join("c.img")), None);
}

const GOOD_HEADER: &str = "ENVI\ndescription = {a\n b}\nsamples = 4\nlines = 3\nbands = 2\nheader offset = 0\n\
data type = 12\ninterleave = bsq\nbyte order = 0\nwavelength units = Micrometers\n\
wavelength = {0.4, 0.5}\nfwhm = {0.01, 0.01}\nbbl = {1, 0}\ndefault bands = {1}\n\
reflectance scale factor = 10000\ndata ignore value = 0\n";

/// Garble a good header: drop, duplicate or corrupt lines, insert braces and junk.
fn garbled_header() -> impl Strategy<Value = String> {
    let lines: Vec<String> = GOOD_HEADER.lines().map(str::to_string).collect();
    let n = lines.len();
    let edit = prop_oneof![
        (0..n).prop_map(|i| (i, 0u8, String::new())),
        (0..n, "[ -~]{0,12}").prop_map(|(i, s)| (i, 1u8, s)),
        (0..n, "[{}=,0-9a-z \\n.-]{0,16}").prop_map(|(i, s)| (i, 2u8, s)),
        (0..n, any::<String>()).prop_map(|(i, s)| (i, 3u8, s)),
    ];
    proptest::collection::vec(edit, 0..6).prop_map(move |edits| {
        let mut out = lines.clone();
        for (i, kind, text) in edits {
            let i = i.min(out.len().saturating_sub(1));
            if out.is_empty() {
                out.push(text);
                continue;
            }
            match kind {
                0 => {
                    out.remove(i);
                }
                1 => out[i] = format!("{} = {text}", out[i].split('=').next().unwrap_or("")),
                2 => out.insert(i, text),
                _ => out[i].push_str(&text),
            }
        }
        out.join("\n")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn garbled_headers_never_panic(text in garbled_header()) {
        // Ok or Err, never a panic; an Err always names the file.
        if let Err(e) = envi::parse_header(&text, Path::new("fuzz.hdr")) {
            prop_assert!(e.to_string().starts_with("fuzz.hdr: header"), "{}", e);
        }
    }

    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        let _ = envi::parse_header(&text, Path::new("fuzz.hdr"));
        let _ = envi::parse_header(&format!("ENVI\n{text}"), Path::new("fuzz.hdr"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Garbled headers over a real data file: reading gives a cube or an error, never a panic.
    #[test]
    fn garbled_headers_over_data_never_panic(text in garbled_header(), len in 0usize..64) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.hdr"), &text).unwrap();
        std::fs::write(dir.path().join("x.img"), vec![7u8; len]).unwrap();
        let _ = envi::read(&dir.path().join("x.hdr"), &Subset::default());
        let _ = envi::read(&dir.path().join("x.img"), &Subset { bands: Some(1..2), ..Subset::default() });
    }
}
