//! Light sources that are formulas rather than tables: CIE daylight at any correlated colour
//! temperature (from the shipped S0, S1, S2 basis, CIE 015) and Planck's black body. Both are
//! returned on a wavelength grid with their maximum over that grid scaled to 1, like the
//! shipped illuminants.

use crate::spectral::library::daylight_basis;
use crate::{bail_invalid, Result};

/// CIE daylight of correlated colour temperature `cct` K (4000–25000, the range CIE 015
/// defines), on `wavelengths` nm, peak 1.
pub fn cie_daylight(cct: f64, wavelengths: &[f32]) -> Result<Vec<f32>> {
    if !(4000.0..=25000.0).contains(&cct) {
        bail_invalid!("CIE daylight is defined for 4000..25000 K, got {cct} K");
    }
    // Chromaticity of the daylight locus (CIE 015:2018, eq. 4.7–4.8).
    let t = 1.0 / cct;
    let x = if cct <= 7000.0 {
        -4.6070e9 * t.powi(3) + 2.9678e6 * t.powi(2) + 0.09911e3 * t + 0.244063
    } else {
        -2.0064e9 * t.powi(3) + 1.9018e6 * t.powi(2) + 0.24748e3 * t + 0.237040
    };
    let y = -3.0 * x * x + 2.870 * x - 0.275;
    // Weights of S1 and S2 (eq. 4.9).
    let m = 0.0241 + 0.2562 * x - 0.7341 * y;
    let m1 = (-1.3515 - 1.7703 * x + 5.9114 * y) / m;
    let m2 = (0.0300 - 31.4424 * x + 30.0717 * y) / m;
    // Combined sample by sample on the basis's own grid, then interpolated onto `wavelengths`.
    let basis = daylight_basis()?;
    let [s0, s1, s2] = &basis.s;
    let values: Vec<f32> = (0..s0.len()).map(|i| (f64::from(s0[i]) + m1 * f64::from(s1[i]) + m2 * f64::from(s2[i])) as f32).collect();
    peak_one(crate::cube::interpolate(&basis.wavelengths, &values, wavelengths)?, &format!("daylight {cct:.0} K"))
}

/// Planck's black body at `kelvin` (1000–25000 K) on `wavelengths` nm, peak 1.
pub fn planckian(kelvin: f64, wavelengths: &[f32]) -> Result<Vec<f32>> {
    if !(1000.0..=25000.0).contains(&kelvin) {
        bail_invalid!("black body temperature {kelvin} K is outside 1000..25000 K");
    }
    const C2: f64 = 1.438_776_877e-2; // m·K, second radiation constant
    let values = wavelengths
        .iter()
        .map(|&nm| {
            let l = f64::from(nm) * 1e-9;
            (1.0 / (l.powi(5) * ((C2 / (l * kelvin)).exp() - 1.0))) as f32
        })
        .collect();
    peak_one(values, &format!("black body {kelvin:.0} K"))
}

fn peak_one(values: Vec<f32>, what: &str) -> Result<Vec<f32>> {
    let max = values.iter().cloned().fold(f32::MIN, f32::max);
    if !(max > 0.0 && max.is_finite()) {
        bail_invalid!("{what}: no positive power on the grid");
    }
    Ok(values.into_iter().map(|v| v.max(0.0) / max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daylight_at_6504_kelvin_is_the_shipped_d65() {
        let wl = crate::default_wavelengths();
        let ours = cie_daylight(6504.0, &wl).unwrap();
        let d65 = crate::spectral::library::illuminant("d65").unwrap().resample(&wl).unwrap().values;
        let d65_max = d65.iter().cloned().fold(0.0f32, f32::max);
        for (a, b) in ours.iter().zip(&d65) {
            // D65's table is rounded; the locus formula gives it to ~1 %.
            assert!((a - b / d65_max).abs() < 0.015, "{ours:?}\n{d65:?}");
        }
    }

    #[test]
    fn warmer_light_is_redder_and_the_range_is_checked() {
        let wl = crate::default_wavelengths();
        let ratio = |s: &[f32]| s[30] / s[5];
        assert!(ratio(&planckian(2856.0, &wl).unwrap()) > ratio(&planckian(6500.0, &wl).unwrap()));
        assert!(ratio(&cie_daylight(4000.0, &wl).unwrap()) > ratio(&cie_daylight(20000.0, &wl).unwrap()));
        // CIE A is a black body at 2856 K
        let a = crate::spectral::library::illuminant("a").unwrap().resample(&wl).unwrap().values;
        let a_max = a.iter().cloned().fold(0.0f32, f32::max);
        for (x, y) in planckian(2856.0, &wl).unwrap().iter().zip(&a) {
            assert!((x - y / a_max).abs() < 0.01);
        }
        assert!(cie_daylight(3000.0, &wl).is_err());
        assert!(planckian(100.0, &wl).is_err());
    }
}
