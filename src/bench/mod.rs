//! `spectral-studio bench`: speed measured, not asserted. Each figure is the median of several
//! timed repetitions, and where the issue names a peer (numpy, scikit-image) the peer runs in
//! the same process tree, on the same files, in the same run, so the ratio is meaningful.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ndarray::{Array2, Array3};
use serde_json::{json, Value};

use crate::io::{self, OpenOptions};
use crate::spectral::camera::CameraResponse;
use crate::spectral::{render, unmix};
use crate::{metrics, Cube, Error, Result};

/// Wall times in milliseconds of `repeats` runs of `f`, after one untimed warm-up
/// (first-touch allocations, thread pools).
pub fn runs_ms<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<Vec<f64>> {
    f()?;
    (0..repeats)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f()?);
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// The median (upper middle for an even count; NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median wall time in milliseconds of `repeats` runs of `f` (after one untimed warm-up).
pub fn median_ms<T>(repeats: usize, f: impl FnMut() -> Result<T>) -> Result<f64> {
    Ok(median(&runs_ms(repeats, f)?))
}

/// A deterministic smooth test cube: no file needed, values in (0, 1).
fn test_cube(bands: usize, rows: usize, cols: usize) -> Cube {
    let data = Array3::from_shape_fn((bands, rows, cols), |(b, r, c)| {
        let x = r as f32 / rows as f32;
        let y = c as f32 / cols as f32;
        let t = b as f32 / bands as f32;
        0.45 + 0.4 * ((6.0 * x + 2.0 * t).sin() * (5.0 * y - 3.0 * t).cos())
    });
    Cube::new(data, crate::cube::default_wavelengths().into_iter().take(bands).collect())
        .expect("31 increasing wavelengths")
}

/// The python interpreter used for the peers: `$SPECTRAL_STUDIO_PYTHON` or `python3`.
fn python() -> String {
    std::env::var("SPECTRAL_STUDIO_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Run a peer script; its last stdout line must be a JSON object. A missing interpreter or
/// package gives `{"error": ...}` instead of failing the whole benchmark.
fn run_peer(script: &str, args: &[&Path]) -> Value {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            text.lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| json!({"error": format!("peer printed no JSON: {text}")}))
        }
        Ok(o) => json!({"error": String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("peer failed").to_string()}),
        Err(e) => json!({"error": format!("cannot run {}: {e}", python())}),
    }
}

const NUMPY_PEER: &str = r#"
import sys, time, json, statistics
import numpy as np
npy, img, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
shape = tuple(int(v) for v in sys.argv[4].split(','))
def med(f):
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)
r = {
  "npy_load_ms": med(lambda: np.load(npy)),
  # the same result as ours: band-contiguous (bands, rows, cols)
  "npy_load_chw_ms": med(lambda: np.ascontiguousarray(np.load(npy).transpose(2, 0, 1))),
  "envi_fromfile_ms": med(lambda: np.fromfile(img, dtype='<f4').reshape(shape)),
  "numpy": np.__version__,
}
print(json.dumps(r))
"#;

const SKIMAGE_PEER: &str = r#"
import sys, time, json, statistics
import numpy as np
from skimage.metrics import structural_similarity
import skimage
pred, gt, repeats = np.load(sys.argv[1]), np.load(sys.argv[2]), int(sys.argv[3])
def ssim():
    return float(np.mean([structural_similarity(pred[..., b], gt[..., b], gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0) for b in range(gt.shape[2])]))
value = ssim()
ts = []
for _ in range(repeats):
    t = time.perf_counter(); ssim(); ts.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"ssim_ms": statistics.median(ts), "ssim": value, "skimage": skimage.__version__}))
"#;

fn ratio(ours: f64, peer: &Value, key: &str) -> Value {
    match peer.get(key).and_then(Value::as_f64) {
        Some(p) if p > 0.0 => json!(ours / p),
        _ => Value::Null,
    }
}

/// Opening, metrics, SSIM and unmixing on the sizes the foundation issue names.
pub fn io_suite(repeats: usize) -> Result<Value> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let (bands, rows, cols) = (31, 482, 512);
    let gt = test_cube(bands, rows, cols);
    let npy = dir.path().join("cube.npy");
    let hdr = dir.path().join("cube.hdr");
    let img = dir.path().join("cube.img");
    io::save(&gt, &npy)?;
    io::save(&gt, &hdr)?;

    let opts = OpenOptions::default();
    let open_npy = median_ms(repeats, || io::open(&npy, &opts))?;
    let open_envi = median_ms(repeats, || io::open(&hdr, &opts))?;
    let reps = repeats.to_string();
    let shape = format!("{bands},{rows},{cols}");
    let numpy = run_peer(NUMPY_PEER, &[&npy, &img, Path::new(&reps), Path::new(&shape)]);

    // A prediction that differs from the ground truth smoothly and by a few percent.
    let pred_data = gt.data.mapv(|v| v * 1.03 + 0.004);
    let pred = Cube::new(pred_data, gt.wavelengths.clone())?;
    let canon = CameraResponse::builtin("canon-eos-5d-mark-ii")?;
    let camera: Array2<f32> = canon.on_grid(&gt.wavelengths)?;
    let rgb = render::clean_rgb(&gt, &canon)?;
    let all = median_ms(repeats, || metrics::all_metrics(&pred.data, &gt.data, Some((rgb.data.view(), camera.view()))))?;
    let ssim_ours = median_ms(repeats, || metrics::ssim(&pred.data, &gt.data))?;
    let pred_npy = dir.path().join("pred.npy");
    io::save(&pred, &pred_npy)?;
    let skimage = run_peer(SKIMAGE_PEER, &[&pred_npy, &npy, Path::new(&repeats.min(3).to_string())]);
    let ssim_value = metrics::ssim(&pred.data, &gt.data)?;

    // Unmixing: 256×256 pixels over 20 endmembers, mixtures of those endmembers plus a ripple.
    let k = 20;
    let endmembers = Array2::from_shape_fn((k, bands), |(i, b)| {
        0.2 + 0.6 * (0.5 + 0.5 * ((b as f32) * (0.05 + 0.03 * i as f32) + i as f32).sin())
    });
    let (ur, uc) = (256, 256);
    let mix = Array3::from_shape_fn((bands, ur, uc), |(b, r, c)| {
        let (i, j) = ((r * 7 + c) % k, (r + 3 * c) % k);
        let w = (r as f32 / ur as f32 + c as f32 / uc as f32) / 2.0;
        (1.0 - w) * endmembers[[i, b]] + w * endmembers[[j, b]] + 0.002 * ((b + r + c) % 3) as f32
    });
    let mixed = Cube::new(mix, gt.wavelengths.clone())?;
    let names: Vec<String> = (0..k).map(|i| format!("e{i}")).collect();
    let unmix_ms = median_ms(repeats.min(3), || unmix::fcls(&mixed, endmembers.view(), &names))?;

    Ok(json!({
        "suite": "io",
        "repeats": repeats,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cube": {"bands": bands, "rows": rows, "cols": cols, "dtype": "float32"},
        "open_npy": {"ours_ms": open_npy, "numpy_load_ms": numpy.get("npy_load_ms"), "ratio": ratio(open_npy, &numpy, "npy_load_ms"),
                      "numpy_load_to_chw_ms": numpy.get("npy_load_chw_ms"), "ratio_same_layout": ratio(open_npy, &numpy, "npy_load_chw_ms"),
                      "goal": "ratio <= 1 (at least as fast as numpy)",
                      "note": "the file is (rows, cols, bands); ours returns band-contiguous (bands, rows, cols), numpy.load a view in file order"},
        "open_envi_bsq": {"ours_ms": open_envi, "numpy_fromfile_ms": numpy.get("envi_fromfile_ms"), "ratio": ratio(open_envi, &numpy, "envi_fromfile_ms"),
                          "goal": "ratio <= 1"},
        "all_metrics": {"ours_ms": all, "goal_ms": 500.0},
        "ssim": {"ours_ms": ssim_ours, "skimage_ms": skimage.get("ssim_ms"), "ratio": ratio(ssim_ours, &skimage, "ssim_ms"),
                 "ours_value": ssim_value, "skimage_value": skimage.get("ssim"), "goal": "ratio <= 1"},
        "unmix_fcls": {"ours_ms": unmix_ms, "pixels": ur * uc, "endmembers": k, "goal_ms": 2000.0},
        "peers": {"numpy": numpy, "skimage": skimage},
    }))
}
pub mod device_check;
pub mod fusion;
pub mod large;
pub mod recon;
