//! Physics pieces used together on synthetic scenes whose truth is known.

use ndarray::Array2;
use spectral_studio::spectral::scene::{generate, SceneConfig};
use spectral_studio::spectral::{library, unmix};

#[test]
fn fcls_recovers_the_scene_abundances_from_its_own_materials() {
    // Any seed works; this one gives a tabletop scene with a handful of materials, so the
    // endmember matrix is well conditioned on 31 bands.
    let scene = generate(&SceneConfig::new(3, 40, 48).unwrap()).unwrap();
    let k = scene.materials.len();
    assert!(k <= 12, "seed 3 was chosen for a small material set, got {k}");
    let wl = &scene.reflectance.wavelengths;
    let mut endmembers = Array2::<f32>::zeros((k, wl.len()));
    for (i, m) in scene.materials.iter().enumerate() {
        let lib = library::library(&m.library).unwrap().resample(wl).unwrap();
        let j = lib.names.iter().position(|n| *n == m.name).unwrap_or_else(|| panic!("{} not in {}", m.name, m.library));
        endmembers.row_mut(i).assign(&lib.spectra.row(j));
    }
    let names: Vec<String> = scene.materials.iter().map(|m| m.name.clone()).collect();
    let result = unmix::fcls(&scene.reflectance, endmembers.view(), &names).unwrap();
    let mean_abs: f64 = result
        .abundances
        .iter()
        .zip(scene.abundances.iter())
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / result.abundances.len() as f64;
    assert!(mean_abs < 0.01, "mean abundance error {mean_abs}");
    assert!(result.mean_residual() < 1e-3, "residual {}", result.mean_residual());
}
