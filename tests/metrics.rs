//! The metrics against numpy / scikit-image references written by
//! `scripts/fixtures/metrics.py` (inputs as .npy, expected values as JSON, NaN as null).

use std::path::PathBuf;

use ndarray::{Array2, Array3, Ix2, Ix3};
use serde_json::Value;
use spectral_studio::io::npy;
use spectral_studio::metrics::{self, MetricSet, SpatialShuffle};

const CASES: [&str; 2] = ["small", "odd"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics").join(name)
}

struct Case {
    pred: Array3<f32>,
    gt: Array3<f32>,
    rgb: Array3<f32>,
    camera: Array2<f32>,
    expected: Value,
}

fn load(case: &str) -> Case {
    let read3 = |part: &str| -> Array3<f32> {
        npy::read_array(&fixture(&format!("{case}_{part}.npy"))).unwrap().into_dimensionality::<Ix3>().unwrap()
    };
    let camera =
        npy::read_array(&fixture(&format!("{case}_camera.npy"))).unwrap().into_dimensionality::<Ix2>().unwrap();
    let text = std::fs::read_to_string(fixture(&format!("{case}.json"))).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let case = Case { pred: read3("pred"), gt: read3("gt"), rgb: read3("rgb"), camera, expected };
    let shape: Vec<usize> =
        case.expected["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(case.pred.shape(), shape.as_slice());
    case
}

/// 1e-4 relative, or 1e-6 absolute for values near zero; null in the JSON means NaN.
fn assert_close(what: &str, got: f64, want: &Value) {
    match want.as_f64() {
        None => assert!(got.is_nan(), "{what}: expected NaN (null), got {got}"),
        Some(want) => {
            let tol = (1e-4 * want.abs()).max(1e-6);
            assert!((got - want).abs() <= tol, "{what}: got {got}, expected {want} (tolerance {tol})");
        }
    }
}

fn assert_all_close(what: &str, got: impl IntoIterator<Item = f64>, want: &Value) {
    let want = want.as_array().unwrap_or_else(|| panic!("{what} missing from the fixture"));
    let got: Vec<f64> = got.into_iter().collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(&format!("{what}[{i}]"), *g, w);
    }
}

fn map_values(map: &Array2<f32>) -> impl Iterator<Item = f64> + '_ {
    map.iter().map(|&v| v as f64)
}

fn flatten(value: &Value) -> Value {
    Value::Array(value.as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().clone()).collect())
}

#[test]
fn scalars_agree_with_numpy_and_scikit_image() {
    for name in CASES {
        let c = load(name);
        let s = &c.expected["scalars"];
        assert_close(&format!("{name} mrae"), metrics::mrae(&c.pred, &c.gt).unwrap(), &s["mrae"]);
        assert_close(&format!("{name} rmse"), metrics::rmse(&c.pred, &c.gt).unwrap(), &s["rmse"]);
        assert_close(&format!("{name} psnr"), metrics::psnr(&c.pred, &c.gt).unwrap(), &s["psnr"]);
        assert_close(&format!("{name} ssim"), metrics::ssim(&c.pred, &c.gt).unwrap(), &s["ssim"]);
        assert_close(&format!("{name} sam"), metrics::sam_deg(&c.pred, &c.gt).unwrap(), &s["sam_deg"]);
        assert_close(
            &format!("{name} consistency"),
            metrics::consistency_mrae(&c.rgb, &c.camera, &c.pred).unwrap(),
            &s["consistency_mrae"],
        );
    }
}

#[test]
fn all_metrics_matches_the_single_functions_and_serialises_the_agreed_keys() {
    for name in CASES {
        let c = load(name);
        let s = &c.expected["scalars"];
        let m: MetricSet = metrics::all_metrics(&c.pred, &c.gt, Some((c.rgb.view(), c.camera.view()))).unwrap();
        for (key, got) in [
            ("mrae", m.mrae),
            ("rmse", m.rmse),
            ("psnr", m.psnr),
            ("ssim", m.ssim),
            ("sam_deg", m.sam_deg),
            ("consistency_mrae", m.consistency_mrae.unwrap()),
        ] {
            assert_close(&format!("{name} all_metrics.{key}"), got, &s[key]);
        }
        let json: Value = serde_json::to_value(m).unwrap();
        let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["consistency_mrae", "mpsnr", "mrae", "psnr", "rmse", "sam_deg", "ssim"]);
        let without = metrics::all_metrics(&c.pred, &c.gt, None).unwrap();
        assert_eq!(without.consistency_mrae, None);
        assert_eq!(without.ssim, m.ssim);
    }
}

#[test]
fn maps_and_band_curves_agree() {
    for name in CASES {
        let c = load(name);
        let e = &c.expected;
        assert_all_close(
            &format!("{name} rmse_map"),
            map_values(&metrics::rmse_map(&c.pred, &c.gt).unwrap()),
            &flatten(&e["rmse_map"]),
        );
        assert_all_close(
            &format!("{name} mrae_map"),
            map_values(&metrics::mrae_map(&c.pred, &c.gt).unwrap()),
            &flatten(&e["mrae_map"]),
        );
        assert_all_close(
            &format!("{name} sam_map"),
            map_values(&metrics::sam_map(&c.pred, &c.gt).unwrap()),
            &flatten(&e["sam_map"]),
        );
        let bands = metrics::band_errors(&c.pred, &c.gt).unwrap();
        assert_all_close(&format!("{name} band rmse"), bands.rmse, &e["band_rmse"]);
        assert_all_close(&format!("{name} band mrae"), bands.mrae, &e["band_mrae"]);
        assert_all_close(
            &format!("{name} band ssim"),
            metrics::ssim_per_band(&c.pred, &c.gt).unwrap(),
            &e["band_ssim"],
        );
    }
}

#[test]
fn fixture_has_the_awkward_pixels_it_promises() {
    // The zero ground-truth spectrum at (2, 3) leaves no MRAE element and no SAM angle there,
    // and the zero prediction at (5, 1) has no SAM angle either.
    let c = load("small");
    assert!(c.expected["mrae_map"][2][3].is_null());
    assert!(c.expected["sam_map"][2][3].is_null());
    assert!(c.expected["sam_map"][5][1].is_null());
    assert!(c.pred.iter().any(|&v| v > 1.0) && c.pred.iter().any(|&v| v < 0.0));
}

#[test]
fn views_and_crops_are_accepted() {
    let c = load("small");
    let crop = ndarray::s![.., 1..13, 0..12];
    let from_views = metrics::ssim(c.pred.slice(crop), c.gt.slice(crop)).unwrap();
    let from_owned = metrics::ssim(&c.pred.slice(crop).to_owned(), &c.gt.slice(crop).to_owned()).unwrap();
    assert!((from_views - from_owned).abs() < 1e-12);
}

#[test]
fn bad_inputs_are_errors_naming_the_problem() {
    let c = load("odd");
    let err = metrics::all_metrics(&c.pred, c.gt.slice(ndarray::s![.., .., 1..]), None).unwrap_err().to_string();
    assert!(err.contains("[5, 13, 17]") && err.contains("[5, 13, 16]"), "{err}");
    let wrong_camera = Array2::<f32>::ones((3, 4));
    let err = metrics::consistency_mrae(&c.rgb, &wrong_camera, &c.pred).unwrap_err().to_string();
    assert!(err.contains("[3, 4]") && err.contains("5-band"), "{err}");
    let err =
        metrics::consistency_mrae(c.rgb.slice(ndarray::s![.., 1.., ..]), &c.camera, &c.pred).unwrap_err().to_string();
    assert!(err.contains("[3, 12, 17]"), "{err}");
    assert!(metrics::scale_brightness(&c.gt, 0.0).is_err());
    assert!(metrics::scale_brightness(&c.gt, f32::NAN).is_err());
}

#[test]
fn brightness_scaling_is_exact_and_leaves_sam_unchanged() {
    let c = load("small");
    let half_pred = metrics::scale_brightness(&c.pred, 0.5).unwrap();
    let half_gt = metrics::scale_brightness(&c.gt, 0.5).unwrap();
    assert_eq!(half_gt[[3, 4, 5]], c.gt[[3, 4, 5]] * 0.5);
    // MRAE and SAM are scale-invariant (up to the MRAE threshold, which moves with the scale)
    let sam = metrics::sam_deg(&c.pred, &c.gt).unwrap();
    assert!((metrics::sam_deg(&half_pred, &half_gt).unwrap() - sam).abs() < 1e-4);
    let rmse = metrics::rmse(&c.pred, &c.gt).unwrap();
    assert!((metrics::rmse(&half_pred, &half_gt).unwrap() - rmse / 2.0).abs() < 1e-6);
}

#[test]
fn spatial_shuffle_keeps_per_pixel_metrics_and_is_seeded() {
    let c = load("small");
    let plan = SpatialShuffle::ntire(16, 14, 11).unwrap();
    let (sp, sg) = (plan.apply(&c.pred).unwrap(), plan.apply(&c.gt).unwrap());
    assert_ne!(sg, c.gt);
    // The same permutation on both sides keeps every per-pixel error, so pixel-wise metrics
    // do not change; SSIM does, because it looks at neighbourhoods.
    assert!((metrics::mrae(&sp, &sg).unwrap() - metrics::mrae(&c.pred, &c.gt).unwrap()).abs() < 1e-9);
    assert!((metrics::sam_deg(&sp, &sg).unwrap() - metrics::sam_deg(&c.pred, &c.gt).unwrap()).abs() < 1e-9);
    assert_eq!(plan.invert(&sp).unwrap(), c.pred);
    assert_eq!(metrics::spatial_shuffle(&c.gt, 4, 11).unwrap(), sg);
    assert_ne!(metrics::spatial_shuffle(&c.gt, 4, 12).unwrap(), sg);
    assert!(plan.apply(c.gt.slice(ndarray::s![.., 1.., ..])).is_err());
}

#[test]
fn mpsnr_is_the_mean_of_per_band_psnr_and_a_band_mask_leaves_bands_out() {
    use ndarray::{s, Array3, Axis};
    use spectral_studio::metrics::{BandMask, WATER_BANDS_NM};
    // 12 bands over 400-2600 nm; the error grows with the band, so leaving bands out shows
    let wavelengths: Vec<f32> = (0..12).map(|b| 400.0 + 200.0 * b as f32).collect();
    let gt = Array3::from_shape_fn((12, 16, 16), |(b, r, c)| 0.2 + 0.02 * b as f32 + 0.01 * ((r * 16 + c) % 7) as f32);
    let pred = Array3::from_shape_fn((12, 16, 16), |(b, r, c)| gt[[b, r, c]] + 0.001 * (b as f32 + 1.0) * if (r + c) % 2 == 0 { 1.0 } else { -1.0 });
    let whole = metrics::all_metrics(&pred, &gt, None).unwrap();
    let per_band: f64 = (0..12).map(|b| metrics::psnr(pred.slice(s![b..b + 1, .., ..]), gt.slice(s![b..b + 1, .., ..])).unwrap()).sum::<f64>() / 12.0;
    assert!((whole.mpsnr - per_band).abs() < 1e-9, "{} vs {per_band}", whole.mpsnr);
    assert!(whole.mpsnr > whole.psnr, "a mean of logs over unequal bands exceeds the log of the mean error");

    let mask = BandMask::parse("water, 2400-2700").unwrap();
    assert_eq!(mask.excluded_nm.len(), 3);
    assert_eq!(&mask.excluded_nm[..2], &WATER_BANDS_NM[..]);
    // 1400 and 1800 nm are water bands, 2400 and 2600 in the given range
    let kept = mask.kept(&wavelengths);
    assert_eq!(kept, [0, 1, 2, 3, 4, 6, 8, 9]);
    let p = spectral_studio::Cube::new(pred.clone(), wavelengths.clone()).unwrap();
    let g = spectral_studio::Cube::new(gt.clone(), wavelengths.clone()).unwrap();
    let masked = metrics::score_masked(&p, &g, None, Some(&mask)).unwrap();
    let direct = metrics::all_metrics(&pred.select(Axis(0), &kept), &gt.select(Axis(0), &kept), None).unwrap();
    assert_eq!(masked.metrics, direct);
    assert_eq!(masked.bands_scored, 8);
    assert_eq!(masked.bands.rmse.len(), 12, "the per-band curves keep every band");
    assert!(masked.metrics.rmse < whole.rmse, "the worst bands were left out");
    assert_eq!(metrics::score(&p, &g, None).unwrap().bands_scored, 12);

    for bad in ["", "wet", "1500", "900-800", "a-b"] {
        let e = BandMask::parse(bad).unwrap_err().to_string();
        assert!(e.contains("water"), "{bad}: {e}");
    }
    let everything = BandMask::parse("0-3000").unwrap();
    let e = metrics::score_masked(&p, &g, None, Some(&everything)).unwrap_err().to_string();
    assert!(e.contains("leaves none of the 12 bands"), "{e}");
}
