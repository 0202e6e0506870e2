//! The NTIRE 2020 real-world simulation: determinism, the Bayer layout, the noise statistics,
//! demosaicing and JPEG behaviour.

use ndarray::{Array2, Array3};
use spectral_studio::spectral::realworld::{
    self, add_noise, demosaic_bilinear, demosaic_malvar, jpeg_round_trip, mosaic_rggb, quantise, simulate, Demosaic,
    Exposure, Noise, RealWorldConfig,
};
use spectral_studio::spectral::rng::Rng;
use spectral_studio::RgbImage;

/// A smooth, colourful test image in [0, 1].
fn smooth_image(rows: usize, cols: usize) -> RgbImage {
    let data = Array3::from_shape_fn((3, rows, cols), |(ch, r, c)| {
        let (y, x) = (r as f32 / rows as f32, c as f32 / cols as f32);
        0.2 + 0.15 * ch as f32 + 0.25 * (3.0 * x + ch as f32).sin() * (2.0 * y).cos()
    });
    RgbImage::new(data).unwrap()
}

fn flat_image(rows: usize, cols: usize, rgb: [f32; 3]) -> RgbImage {
    RgbImage::new(Array3::from_shape_fn((3, rows, cols), |(ch, _, _)| rgb[ch])).unwrap()
}

fn mean_var(values: impl Iterator<Item = f32>) -> (f64, f64) {
    let v: Vec<f64> = values.map(|x| x as f64).collect();
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (m, v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64)
}

fn max_abs_diff(a: &Array3<f32>, b: &Array3<f32>) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn defaults_are_the_ntire_2020_example_settings() {
    let d = RealWorldConfig::default();
    assert_eq!(d.bits, 16);
    assert_eq!(d.jpeg_quality, Some(80));
    assert_eq!(d.demosaic, Demosaic::Malvar);
    let noise = d.noise.unwrap();
    assert_eq!(noise.exposure, Exposure::MeanGreenElectrons(5000.0));
    assert_eq!(noise.read_noise_electrons, 100.0);
}

#[test]
fn same_seed_same_output_different_seed_different_output() {
    let img = smooth_image(24, 30);
    let config = RealWorldConfig { seed: 42, ..Default::default() };
    let a = simulate(&img, &config).unwrap();
    let b = simulate(&img, &config).unwrap();
    assert_eq!(a, b);
    let c = simulate(&img, &RealWorldConfig { seed: 43, ..config }).unwrap();
    assert_ne!(a, c);
    // and the noise really is noise of a sensible size, not a no-op or a wreck
    let diff = max_abs_diff(&a.data, &img.data);
    assert!(diff > 0.01 && diff < 0.25, "max difference from the clean image {diff}");
}

#[test]
fn mosaic_is_rggb() {
    let img = flat_image(4, 6, [0.1, 0.5, 0.9]);
    let m = mosaic_rggb(&img);
    assert_eq!(m.dim(), (4, 6));
    assert_eq!(m[[0, 0]], 0.1);
    assert_eq!(m[[0, 1]], 0.5);
    assert_eq!(m[[1, 0]], 0.5);
    assert_eq!(m[[1, 1]], 0.9);
    assert_eq!(m[[2, 4]], 0.1);
    assert_eq!(m[[3, 5]], 0.9);
    assert_eq!(realworld::bayer_channel(3, 2), 1);
    // out-of-range input is clipped: no negative light, saturation at full scale
    let wild = flat_image(2, 2, [-0.3, 1.7, 0.5]);
    let m = mosaic_rggb(&wild);
    assert_eq!((m[[0, 0]], m[[0, 1]], m[[1, 1]]), (0.0, 1.0, 0.5));
}

#[test]
fn flat_image_demosaics_back_to_itself() {
    let img = flat_image(9, 11, [0.2, 0.55, 0.8]);
    let mosaic = mosaic_rggb(&img);
    for out in [demosaic_bilinear(&mosaic).unwrap(), demosaic_malvar(&mosaic).unwrap()] {
        assert!(max_abs_diff(&out.data, &img.data) < 1e-6);
    }
    // the whole pipeline without noise or JPEG only adds the 16-bit rounding
    for demosaic in [Demosaic::Bilinear, Demosaic::Malvar] {
        let config = RealWorldConfig { noise: None, jpeg_quality: None, demosaic, ..Default::default() };
        let out = simulate(&img, &config).unwrap();
        assert!(max_abs_diff(&out.data, &img.data) < 1.0 / 65535.0);
    }
}

#[test]
fn demosaicing_recovers_a_smooth_image_closely() {
    let img = smooth_image(40, 48);
    let mosaic = mosaic_rggb(&img);
    let bilinear = demosaic_bilinear(&mosaic).unwrap();
    let malvar = demosaic_malvar(&mosaic).unwrap();
    let err = |a: &RgbImage| {
        (a.data.iter().zip(&img.data).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.data.len() as f64).sqrt()
    };
    assert!(err(&bilinear) < 0.01, "bilinear rmse {}", err(&bilinear));
    assert!(err(&malvar) < 0.01, "malvar rmse {}", err(&malvar));
}

#[test]
fn shot_noise_variance_is_proportional_to_the_mean() {
    let k = 2000.0; // electrons at full scale
    let noise = Noise { exposure: Exposure::ElectronsPerUnit(k), read_noise_electrons: 0.0 };
    let mut rng = Rng::new(5);
    let mut var_at = |level: f32| {
        let flat = Array2::from_elem((200, 200), level);
        let noisy = add_noise(&flat, &noise, &mut rng).unwrap();
        let (m, v) = mean_var(noisy.iter().copied());
        assert!((m - level as f64).abs() < 0.01 * level as f64, "mean {m} at level {level}");
        v
    };
    let (v1, v4) = (var_at(0.1), var_at(0.4));
    // Poisson: variance in electrons = mean in electrons, so in units var = level / k.
    assert!((v1 / (0.1 / k as f64) - 1.0).abs() < 0.05, "variance {v1}");
    assert!((v4 / v1 - 4.0).abs() < 0.3, "variance ratio {}", v4 / v1);
}

#[test]
fn read_noise_is_gaussian_of_the_given_sigma_and_exposure_follows_the_green_mean() {
    let mut rng = Rng::new(9);
    let dark = Array2::from_elem((200, 200), 0.0f32);
    let read_only = Noise { exposure: Exposure::ElectronsPerUnit(1000.0), read_noise_electrons: 50.0 };
    let (m, v) = mean_var(add_noise(&dark, &read_only, &mut rng).unwrap().iter().copied());
    assert!(m.abs() < 0.002 && (v.sqrt() - 0.05).abs() < 0.002, "mean {m} std {}", v.sqrt());

    // NTIRE exposure: green pixels average 5000 e-, so a flat mosaic's relative noise is
    // 1/sqrt(5000) whatever its brightness.
    let ntire = Noise { exposure: Exposure::MeanGreenElectrons(5000.0), read_noise_electrons: 0.0 };
    for level in [0.05f32, 0.6] {
        let flat = Array2::from_elem((200, 200), level);
        let (m, v) = mean_var(add_noise(&flat, &ntire, &mut rng).unwrap().iter().copied());
        let relative = v.sqrt() / m;
        assert!((relative * 5000f64.sqrt() - 1.0).abs() < 0.05, "relative noise {relative} at {level}");
    }
    assert!(add_noise(&dark, &ntire, &mut rng).is_err(), "a black image has no green mean to expose for");
}

#[test]
fn quantisation_rounds_to_adc_levels() {
    let m = Array2::from_shape_vec((1, 4), vec![0.5, -0.1, 1.3, 0.1]).unwrap();
    let q = quantise(&m, 8).unwrap();
    assert_eq!(q[[0, 0]], 128.0 / 255.0);
    assert_eq!(q[[0, 1]], 0.0);
    assert_eq!(q[[0, 2]], 1.0);
    assert_eq!(q[[0, 3]], 26.0 / 255.0);
    assert!(quantise(&m, 7).is_err() && quantise(&m, 17).is_err());
}

#[test]
fn jpeg_at_quality_100_keeps_a_smooth_image() {
    let img = smooth_image(32, 40);
    let out = jpeg_round_trip(&img, 100).unwrap();
    assert_eq!(out.data.dim(), img.data.dim());
    let max = max_abs_diff(&out.data, &img.data);
    assert!(max < 0.02, "max error {max}");
    let low = jpeg_round_trip(&img, 10).unwrap();
    assert!(max_abs_diff(&low.data, &img.data) > max, "quality 10 should lose more than 100");
}

#[test]
fn output_stays_in_unit_range_for_any_input() {
    let data = Array3::from_shape_fn((3, 17, 23), |(ch, r, c)| ((ch * 7 + r * 13 + c * 29) % 17) as f32 / 8.0 - 0.5);
    let img = RgbImage::new(data).unwrap();
    for demosaic in [Demosaic::Bilinear, Demosaic::Malvar] {
        for jpeg_quality in [None, Some(50)] {
            let config = RealWorldConfig { seed: 3, demosaic, jpeg_quality, ..Default::default() };
            let out = simulate(&img, &config).unwrap();
            assert_eq!(out.data.dim(), (3, 17, 23));
            assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }
}

#[test]
fn bad_settings_and_inputs_are_errors() {
    let img = smooth_image(8, 8);
    let bad = [
        RealWorldConfig { bits: 4, ..Default::default() },
        RealWorldConfig { jpeg_quality: Some(0), ..Default::default() },
        RealWorldConfig { jpeg_quality: Some(101), ..Default::default() },
        RealWorldConfig {
            noise: Some(Noise { exposure: Exposure::ElectronsPerUnit(-1.0), read_noise_electrons: 1.0 }),
            ..Default::default()
        },
        RealWorldConfig {
            noise: Some(Noise { exposure: Exposure::ElectronsPerUnit(100.0), read_noise_electrons: f32::NAN }),
            ..Default::default()
        },
    ];
    for config in bad {
        assert!(simulate(&img, &config).is_err(), "{config:?} should be refused");
    }
    assert!(simulate(&smooth_image(1, 8), &RealWorldConfig::default()).is_err());
    let mut nan = smooth_image(4, 4);
    nan.data[[1, 2, 2]] = f32::NAN;
    let err = simulate(&nan, &RealWorldConfig::default()).unwrap_err().to_string();
    assert!(err.contains("NaN"), "{err}");
}
