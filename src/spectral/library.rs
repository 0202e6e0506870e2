//! The spectral data shipped under `assets/` and loaders for user-supplied spectral libraries.
//!
//! Every asset is embedded in the binary with `include_str!`, so the CLI works from any
//! folder, and parsed once on first use (`OnceLock`). `scripts/make_assets.py` writes the
//! files and `assets/SOURCES.md` says where each comes from.
//!
//! Two CSV shapes are read here (and by [`crate::spectral::camera`]):
//! - *curves*: a header, then `wavelength,<channel>,<channel>...` rows (cameras, CMFs,
//!   illuminants, and user libraries with one column per material);
//! - *library rows*: a header `name,category,<nm>,<nm>,...`, then one spectrum per row.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{Array1, Array2, ArrayView1, Axis};

use crate::cube::interpolation_matrix;
use crate::{bail_invalid, Error, Result};

/// One sampled curve: `values[i]` at `wavelengths[i]` nm.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    pub name: String,
    pub wavelengths: Vec<f32>,
    pub values: Vec<f32>,
}

impl Spectrum {
    /// Resampled, and zero outside its table. Only for weights that are multiplied by a
    /// response curve which is itself zero there (an illuminant inside a camera or CIE
    /// weighting): elsewhere a missing spectrum must stay an error.
    pub fn resample_under_response(&self, target: &[f32]) -> Result<Spectrum> {
        let m = crate::cube::response_matrix(&self.wavelengths, target)
            .map_err(|e| Error::invalid(format!("spectrum '{}': {e}", self.name)))?;
        let values = m.dot(&ndarray::Array1::from(self.values.clone())).to_vec();
        Ok(Spectrum { name: self.name.clone(), wavelengths: target.to_vec(), values })
    }

    /// Linear interpolation onto `target` nm. Targets outside the curve's range are an error
    /// (extrapolating invents data).
    pub fn resample(&self, target: &[f32]) -> Result<Spectrum> {
        let values = crate::cube::interpolate(&self.wavelengths, &self.values, target)
            .map_err(|e| Error::invalid(format!("spectrum '{}': {e}", self.name)))?;
        Ok(Spectrum { name: self.name.clone(), wavelengths: target.to_vec(), values })
    }
}

/// A set of named spectra (reflectance, 0..1) on one wavelength grid.
#[derive(Clone, Debug, PartialEq)]
pub struct SpectralLibrary {
    /// Built-in name or the file it was read from.
    pub name: String,
    pub names: Vec<String>,
    /// One category per spectrum, `""` when the source gives none (earthlib: `vegetation/canopy`,
    /// `bare/soil`, `built/road`, ...; Munsell: `munsell/5R`, ...).
    pub categories: Vec<String>,
    pub wavelengths: Vec<f32>,
    /// (spectra, bands)
    pub spectra: Array2<f32>,
}

impl SpectralLibrary {
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    pub fn spectrum(&self, i: usize) -> ArrayView1<'_, f32> {
        self.spectra.row(i)
    }
    /// Index of the spectrum called `name` (exact match).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
    /// Indices of the spectra whose category starts with `prefix` (e.g. `"vegetation"`).
    pub fn indices_in(&self, prefix: &str) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.categories[i].starts_with(prefix)).collect()
    }
    /// The spectra with the given indices, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<SpectralLibrary> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            bail_invalid!("library '{}' has {} spectra, index {bad} asked for", self.name, self.len());
        }
        Ok(SpectralLibrary {
            name: self.name.clone(),
            names: indices.iter().map(|&i| self.names[i].clone()).collect(),
            categories: indices.iter().map(|&i| self.categories[i].clone()).collect(),
            wavelengths: self.wavelengths.clone(),
            spectra: self.spectra.select(Axis(0), indices),
        })
    }
    /// Every spectrum linearly interpolated onto `target` nm (no extrapolation).
    pub fn resample(&self, target: &[f32]) -> Result<SpectralLibrary> {
        let m = interpolation_matrix(&self.wavelengths, target)
            .map_err(|e| Error::invalid(format!("library '{}': {e}", self.name)))?;
        // (n, src) · (src, target)
        let spectra = self.spectra.dot(&m.t());
        Ok(SpectralLibrary { spectra, wavelengths: target.to_vec(), ..self.clone_header() })
    }
    fn clone_header(&self) -> SpectralLibrary {
        SpectralLibrary {
            name: self.name.clone(),
            names: self.names.clone(),
            categories: self.categories.clone(),
            wavelengths: Vec::new(),
            spectra: Array2::zeros((0, 0)),
        }
    }
}

/// The CIE 1931 2° standard observer.
#[derive(Clone, Debug, PartialEq)]
pub struct Cmf {
    pub wavelengths: Vec<f32>,
    /// (3, n): rows x̄, ȳ, z̄.
    pub xyz: Array2<f32>,
}

impl Cmf {
    /// x̄, ȳ, z̄ on `target` nm, (3, target.len()), linear interpolation of the 1 nm table.
    pub fn on_grid(&self, target: &[f32]) -> Result<Array2<f32>> {
        // zero outside 380–780 nm, where the standard observer does not see
        let m = crate::cube::response_matrix(&self.wavelengths, target)
            .map_err(|e| Error::invalid(format!("CIE 1931 colour-matching functions: {e}")))?;
        Ok(self.xyz.dot(&m.t()))
    }
}

/// One row of `spectral-studio assets`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AssetInfo {
    pub kind: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub source: &'static str,
}

// ---------------------------------------------------------------------------------------------
// The embedded files.

struct Embedded {
    kind: &'static str,
    name: &'static str,
    file: &'static str,
    text: &'static str,
    description: &'static str,
    source: &'static str,
}

macro_rules! asset {
    ($kind:expr, $name:expr, $file:expr, $desc:expr, $src:expr) => {
        Embedded {
            kind: $kind,
            name: $name,
            file: $file,
            text: include_str!(concat!("../../assets/", $file)),
            description: $desc,
            source: $src,
        }
    };
}

const COLOUR: &str = "colour-science 0.4.7 (BSD-3-Clause)";

static ASSETS: &[Embedded] = &[
    asset!(
        "camera",
        "canon-eos-5d-mark-ii",
        "cameras/canon_eos_5d_mark_ii.csv",
        "Canon EOS 5D Mark II RGB sensitivities, 380-780 nm / 5 nm",
        "colour-science 0.4.7 rawtoaces data (BSD-3-Clause)"
    ),
    asset!(
        "camera",
        "nikon-5100",
        "cameras/nikon_5100.csv",
        "Nikon D5100 RGB sensitivities (NPL, Darrodi et al. 2015), 380-780 nm / 5 nm",
        COLOUR
    ),
    asset!(
        "camera-basis",
        "dyer2017",
        "cameras/dyer2017_basis.csv",
        "Dyer et al. 2017 camera-sensitivity basis: 6 functions per channel, 400-700 nm / 10 nm",
        COLOUR
    ),
    asset!(
        "cmf",
        "cie1931",
        "cie/cie1931_2deg.csv",
        "CIE 1931 2-degree colour-matching functions, 380-780 nm / 1 nm",
        COLOUR
    ),
    asset!(
        "illuminant-basis",
        "cie-daylight",
        "illuminants/cie_daylight_basis.csv",
        "CIE daylight basis S0, S1, S2 (any CCT 4000-25000 K), 380-780 nm / 5 nm",
        COLOUR
    ),
    asset!("illuminant", "d65", "illuminants/d65.csv", "CIE D65 daylight, peak 1", COLOUR),
    asset!("illuminant", "a", "illuminants/a.csv", "CIE A incandescent (2856 K), peak 1", COLOUR),
    asset!("illuminant", "f2", "illuminants/f2.csv", "CIE F2 cool-white fluorescent, peak 1", COLOUR),
    asset!("illuminant", "f11", "illuminants/f11.csv", "CIE F11 narrow-band tri-phosphor fluorescent, peak 1", COLOUR),
    asset!("illuminant", "led-b3", "illuminants/led-b3.csv", "CIE LED-B3 phosphor-converted white LED, peak 1", COLOUR),
    asset!(
        "lamps",
        "cie-lamps",
        "illuminants/cie-lamps.csv",
        "21 CIE fluorescent and LED lamps (not the held-out FL11's and LED-B3's families), peak 1, 380-780 nm / 5 nm",
        COLOUR
    ),
    asset!(
        "illuminant",
        "astm-g173",
        "illuminants/astm-g173.csv",
        "ASTM G173-03 global tilt solar spectrum, 380-780 nm, peak 1",
        "pvlib 0.16.1 (BSD-3-Clause)"
    ),
    asset!(
        "illuminant",
        "astm-g173-wide",
        "illuminants/astm-g173-wide.csv",
        "ASTM G173-03 global tilt solar spectrum, whole table 280-4000 nm, peak 1 over 380-780 nm",
        "pvlib 0.16.1 (BSD-3-Clause)"
    ),
    asset!(
        "library",
        "colorchecker",
        "libraries/colorchecker.csv",
        "ColorChecker 24 patches (BabelColor average 2005), 400-700 nm / 10 nm",
        COLOUR
    ),
    asset!(
        "library",
        "rawtoaces-190",
        "libraries/rawtoaces190.csv",
        "rawtoaces 190 training reflectances, 400-700 nm / 10 nm",
        COLOUR
    ),
    asset!(
        "library",
        "earthlib",
        "libraries/earthlib.csv",
        "Earth Library: 7260 soil, vegetation, urban and NPV reflectances, 400-700 nm / 10 nm",
        "earthlib 1.1.0 (MIT)"
    ),
    asset!(
        "library",
        "earthlib-wide",
        "libraries/earthlib-wide.csv",
        "345 earthlib spectra chosen to cover the library (k-means medoids), 400-2450 nm / 10 nm: INSS's library",
        "earthlib 1.1.0 (MIT)"
    ),
    asset!(
        "library",
        "munsell",
        "libraries/munsell.csv",
        "1269 matte Munsell chips (University of Eastern Finland), 400-700 nm / 10 nm",
        "colorimetry 0.1.0 crate (MIT OR Apache-2.0)"
    ),
    asset!(
        "sensor-bands",
        "earthlib-sensors",
        "sensors/earthlib_band_centres.csv",
        "band centres of 16 sensors (NEON AOP, Sentinel-2, Landsat 4-9, MODIS, ASD, ...), nm",
        "earthlib 1.1.0 (MIT)"
    ),
];

fn embedded(kind: &str, name: &str) -> Option<&'static Embedded> {
    ASSETS.iter().find(|a| a.kind == kind && a.name == name)
}

fn names_of(kind: &str) -> Vec<&'static str> {
    ASSETS.iter().filter(|a| a.kind == kind).map(|a| a.name).collect()
}

/// The path an embedded asset is reported under in error messages.
fn asset_path(a: &Embedded) -> PathBuf {
    Path::new("assets").join(a.file)
}

/// Every shipped asset, for `spectral-studio assets`.
pub fn list_assets() -> Vec<AssetInfo> {
    ASSETS
        .iter()
        .map(|a| AssetInfo { kind: a.kind, name: a.name, description: a.description, source: a.source })
        .collect()
}

/// Names accepted by [`illuminant`].
pub fn illuminant_names() -> Vec<&'static str> {
    names_of("illuminant")
}

/// Names accepted by [`library`].
pub fn library_names() -> Vec<&'static str> {
    names_of("library")
}

/// The raw text of a built-in camera CSV (used by `camera`).
pub(crate) fn camera_asset(name: &str) -> Option<(PathBuf, &'static str)> {
    embedded("camera", name).map(|a| (asset_path(a), a.text))
}

/// A shipped illuminant by name (case-insensitive): relative power, peak 1 over 380–780 nm,
/// on its native grid.
pub fn illuminant(name: &str) -> Result<Spectrum> {
    let key = name.trim().to_ascii_lowercase();
    let Some(asset) = embedded("illuminant", &key) else {
        bail_invalid!("unknown illuminant '{name}': choose one of {}", illuminant_names().join(", "));
    };
    let curves = parse_curves(asset.text, &asset_path(asset))?;
    let values = curves.columns.into_iter().next().unwrap_or_default();
    Ok(Spectrum { name: key, wavelengths: curves.wavelengths, values })
}

/// The CIE fluorescent and LED lamps a training scene may be lit by (`assets/illuminants/
/// cie-lamps.csv`: every CIE FL and LED table but the held-out FL11's and LED-B3's families),
/// each relative power with peak 1, on its native grid. Parsed once.
pub fn training_lamps() -> &'static [Spectrum] {
    static LAMPS: OnceLock<Vec<Spectrum>> = OnceLock::new();
    LAMPS.get_or_init(|| {
        let asset = embedded("lamps", "cie-lamps").expect("the lamp table is in the table of assets");
        // Written by make_assets.py and checked by the tests: a parse failure is a build defect.
        let c = parse_curves(asset.text, &asset_path(asset)).expect("embedded lamp table parses");
        c.header.into_iter().zip(c.columns).map(|(name, values)| Spectrum { name, wavelengths: c.wavelengths.clone(), values }).collect()
    })
}

/// A sensor whose band centres ship (to label a cube that came without wavelengths).
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    pub name: String,
    /// One centre per band, nm, strictly increasing.
    pub centres: Vec<f32>,
}

/// The sensors whose band centres ship (`assets/sensors/`), by name (parsed once).
pub fn sensors() -> &'static [Sensor] {
    static SENSORS: OnceLock<Vec<Sensor>> = OnceLock::new();
    SENSORS.get_or_init(|| {
        let asset = embedded("sensor-bands", "earthlib-sensors").expect("the sensor asset is in the table");
        // Written by make_assets.py and checked by the tests: a parse failure is a build defect.
        parse_sensors(asset.text, &asset_path(asset)).expect("embedded sensor table parses")
    })
}

/// Rows `name,centre,centre,...` (nm) after a header line.
fn parse_sensors(text: &str, path: &Path) -> Result<Vec<Sensor>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let mut fields = line.split(',');
        let name = fields.next().unwrap_or_default().trim().to_string();
        let centres = fields
            .map(|f| f.trim().parse::<f32>().map_err(|_| Error::format(path, format!("line {}: '{f}' is not a number", i + 1))))
            .collect::<Result<Vec<f32>>>()?;
        if centres.is_empty() || centres.windows(2).any(|w| !(w[1] > w[0])) {
            return Err(Error::format(path, format!("line {}: sensor '{name}' needs increasing band centres", i + 1)));
        }
        out.push(Sensor { name, centres });
    }
    Ok(out)
}

/// The CIE 1931 2° colour-matching functions (parsed once).
pub fn cmf_cie1931() -> &'static Cmf {
    static CMF: OnceLock<Cmf> = OnceLock::new();
    CMF.get_or_init(|| {
        let asset = embedded("cmf", "cie1931").expect("the CMF asset is in the table");
        // The embedded file is written by make_assets.py and checked by the tests: a parse
        // failure is a build defect, not a user error.
        let c = parse_curves(asset.text, &asset_path(asset)).expect("embedded CIE 1931 table parses");
        let n = c.wavelengths.len();
        let mut xyz = Array2::zeros((3, n));
        for (k, col) in c.columns.iter().take(3).enumerate() {
            xyz.row_mut(k).assign(&Array1::from(col.clone()));
        }
        Cmf { wavelengths: c.wavelengths, xyz }
    })
}

/// The Dyer 2017 camera-sensitivity basis: wavelengths (400..700/10) and an array
/// (6 functions, 3 channels, 31 bands).
pub fn dyer2017_basis() -> Result<(Vec<f32>, ndarray::Array3<f32>)> {
    let asset = embedded("camera-basis", "dyer2017").expect("the Dyer basis asset is in the table");
    let path = asset_path(asset);
    let c = parse_curves(asset.text, &path)?;
    if c.columns.len() != 18 {
        return Err(Error::format(path, format!("expected 18 basis columns, found {}", c.columns.len())));
    }
    let bands = c.wavelengths.len();
    let mut out = ndarray::Array3::zeros((6, 3, bands));
    for ch in 0..3 {
        for k in 0..6 {
            out.slice_mut(ndarray::s![k, ch, ..]).assign(&Array1::from(c.columns[ch * 6 + k].clone()));
        }
    }
    Ok((c.wavelengths, out))
}

/// The CIE daylight basis on its native grid.
#[derive(Clone, Debug, PartialEq)]
pub struct DaylightBasis {
    /// nm
    pub wavelengths: Vec<f32>,
    /// S0, S1, S2, one value per wavelength each.
    pub s: [Vec<f32>; 3],
}

/// The CIE daylight basis S0, S1, S2 (parsed once per process).
pub fn daylight_basis() -> Result<&'static DaylightBasis> {
    static BASIS: OnceLock<std::result::Result<DaylightBasis, String>> = OnceLock::new();
    BASIS
        .get_or_init(|| {
            let asset = embedded("illuminant-basis", "cie-daylight").expect("the daylight basis asset is in the table");
            let c = parse_curves(asset.text, &asset_path(asset)).map_err(|e| e.to_string())?;
            let found = c.columns.len();
            let s: [Vec<f32>; 3] = c.columns.try_into().map_err(|_| format!("{}: expected 3 columns s0,s1,s2, found {found}", asset_path(asset).display()))?;
            Ok(DaylightBasis { wavelengths: c.wavelengths, s })
        })
        .as_ref()
        .map_err(|e| Error::invalid(e.clone()))
}

/// A shipped reflectance library by name (case-insensitive): `colorchecker`, `rawtoaces-190`,
/// `earthlib`, `munsell`.
pub fn library(name: &str) -> Result<SpectralLibrary> {
    library_ref(name).cloned()
}

/// Like [`library`] without the copy (the library is parsed once per process).
pub fn library_ref(name: &str) -> Result<&'static SpectralLibrary> {
    static CACHE: OnceLock<Vec<OnceLock<SpectralLibrary>>> = OnceLock::new();
    let key = name.trim().to_ascii_lowercase();
    let libs: Vec<&Embedded> = ASSETS.iter().filter(|a| a.kind == "library").collect();
    let Some(i) = libs.iter().position(|a| a.name == key) else {
        bail_invalid!(
            "unknown spectral library '{name}': choose one of {} or give a .csv/.sli file",
            library_names().join(", ")
        );
    };
    let slots = CACHE.get_or_init(|| libs.iter().map(|_| OnceLock::new()).collect());
    if let Some(lib) = slots[i].get() {
        return Ok(lib);
    }
    let asset = libs[i];
    let mut lib = parse_library_csv(asset.text, &asset_path(asset))?;
    lib.name = asset.name.to_string();
    Ok(slots[i].get_or_init(|| lib))
}

/// A built-in library name, or a file (CSV in either shape described in the module doc).
/// For the CLI's `--library NAME|FILE`.
pub fn parse_library(name_or_path: &str) -> Result<SpectralLibrary> {
    let key = name_or_path.trim().to_ascii_lowercase();
    if library_names().contains(&key.as_str()) {
        return library(&key);
    }
    let path = Path::new(name_or_path);
    if path.exists() {
        return load_library_file(path);
    }
    bail_invalid!(
        "'{name_or_path}' is neither a built-in spectral library ({}) nor an existing file",
        library_names().join(", ")
    )
}

/// Read a spectral library from a file: an ENVI spectral library (`.sli`, or its `.hdr`),
/// CSV with `wavelength` then one column per material, or CSV with `name,category,<nm>...`
/// rows.
pub fn load_library_file(path: &Path) -> Result<SpectralLibrary> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext == "sli" || ext == "hdr" {
        let sli = crate::io::envi::read_library(path)?;
        return Ok(SpectralLibrary {
            name: path.display().to_string(),
            categories: vec![String::new(); sli.names.len()],
            names: sli.names,
            wavelengths: sli.wavelengths,
            spectra: sli.spectra,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lib = parse_library_csv(&text, path)?;
    lib.name = path.display().to_string();
    Ok(lib)
}

// ---------------------------------------------------------------------------------------------
// CSV parsing (both shapes). Errors name the file and the 1-based line.

/// A curves table: `wavelength,<col>,<col>...`.
pub(crate) struct Curves {
    /// Column names after `wavelength`.
    pub header: Vec<String>,
    pub wavelengths: Vec<f32>,
    /// One vector per column, each as long as `wavelengths`.
    pub columns: Vec<Vec<f32>>,
}

/// Lines worth reading: (1-based line number, fields). Blank lines and `#` comments skipped;
/// surrounding whitespace and double quotes of each field removed.
fn csv_lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        Some((i + 1, line.split(',').map(|f| f.trim().trim_matches('"').trim()).collect()))
    })
}

fn parse_number(field: &str, path: &Path, line: usize, what: &str) -> Result<f32> {
    match field.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::format(path, format!("line {line}: {what} '{field}' is not a finite number"))),
    }
}

fn check_increasing(wl: &[f32], lines: &[usize], path: &Path) -> Result<()> {
    for i in 1..wl.len() {
        if wl[i] <= wl[i - 1] {
            return Err(Error::format(
                path,
                format!("line {}: wavelength {} nm does not increase (previous {} nm)", lines[i], wl[i], wl[i - 1]),
            ));
        }
    }
    Ok(())
}

/// Parse a curves CSV. The first non-comment line must be a header whose first field is
/// `wavelength` (any case, `nm`/`lambda` accepted too).
pub(crate) fn parse_curves(text: &str, path: &Path) -> Result<Curves> {
    let mut rows = csv_lines(text);
    let Some((hline, header)) = rows.next() else {
        return Err(Error::format(path, "the file is empty"));
    };
    let first = header[0].to_ascii_lowercase();
    if !(first.starts_with("wavelength") || first == "nm" || first == "lambda") {
        return Err(Error::format(
            path,
            format!("line {hline}: expected a header starting with 'wavelength', found '{}'", header[0]),
        ));
    }
    if header.len() < 2 {
        return Err(Error::format(path, format!("line {hline}: the header names no data column")));
    }
    let ncol = header.len() - 1;
    let mut wavelengths = Vec::new();
    let mut lines = Vec::new();
    let mut columns = vec![Vec::new(); ncol];
    for (line, fields) in rows {
        if fields.len() != header.len() {
            return Err(Error::format(
                path,
                format!("line {line}: {} fields, the header has {}", fields.len(), header.len()),
            ));
        }
        wavelengths.push(parse_number(fields[0], path, line, "wavelength")?);
        lines.push(line);
        for (k, f) in fields[1..].iter().enumerate() {
            columns[k].push(parse_number(f, path, line, &format!("value of '{}'", header[k + 1]))?);
        }
    }
    if wavelengths.len() < 2 {
        return Err(Error::format(path, "fewer than two wavelength rows"));
    }
    check_increasing(&wavelengths, &lines, path)?;
    Ok(Curves { header: header[1..].iter().map(|s| s.to_string()).collect(), wavelengths, columns })
}

/// Parse a library CSV in either shape.
fn parse_library_csv(text: &str, path: &Path) -> Result<SpectralLibrary> {
    let first = csv_lines(text).next().map(|(_, f)| f[0].to_ascii_lowercase());
    match first.as_deref() {
        None => Err(Error::format(path, "the file is empty")),
        Some("name") => parse_library_rows(text, path),
        Some(_) => {
            let c = parse_curves(text, path)?;
            let n = c.columns.len();
            let bands = c.wavelengths.len();
            let mut spectra = Array2::zeros((n, bands));
            for (i, col) in c.columns.iter().enumerate() {
                spectra.row_mut(i).assign(&ArrayView1::from(col.as_slice()));
            }
            Ok(SpectralLibrary {
                name: String::new(),
                names: c.header,
                categories: vec![String::new(); n],
                wavelengths: c.wavelengths,
                spectra,
            })
        }
    }
}

/// `name,category,<nm>,<nm>,...` then one spectrum per row (the `category` column optional).
fn parse_library_rows(text: &str, path: &Path) -> Result<SpectralLibrary> {
    let mut rows = csv_lines(text);
    let (hline, header) = rows.next().ok_or_else(|| Error::format(path, "the file is empty"))?;
    let has_category = header.get(1).is_some_and(|h| h.eq_ignore_ascii_case("category"));
    let first_value = if has_category { 2 } else { 1 };
    let mut wavelengths = Vec::new();
    for h in &header[first_value..] {
        wavelengths.push(parse_number(h, path, hline, "wavelength in the header")?);
    }
    if wavelengths.is_empty() {
        return Err(Error::format(path, format!("line {hline}: the header names no wavelength column")));
    }
    check_increasing(&wavelengths, &vec![hline; wavelengths.len()], path)?;
    let bands = wavelengths.len();
    let (mut names, mut categories, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (line, fields) in rows {
        if fields.len() != header.len() {
            return Err(Error::format(
                path,
                format!("line {line}: {} fields, the header has {}", fields.len(), header.len()),
            ));
        }
        names.push(fields[0].to_string());
        categories.push(if has_category { fields[1].to_string() } else { String::new() });
        for (k, f) in fields[first_value..].iter().enumerate() {
            values.push(parse_number(f, path, line, &format!("value at {} nm", wavelengths[k]))?);
        }
    }
    if names.is_empty() {
        return Err(Error::format(path, "no spectrum rows after the header"));
    }
    let spectra = Array2::from_shape_vec((names.len(), bands), values).expect("row lengths were checked");
    Ok(SpectralLibrary { name: String::new(), names, categories, wavelengths, spectra })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_asset_parses() {
        for a in ASSETS {
            match a.kind {
                "library" => {
                    let lib = library(a.name).unwrap();
                    assert!(lib.len() >= 24, "{}", a.name);
                    if a.name == "earthlib-wide" {
                        // earthlib's native grid, without its two water-vapour gaps
                        assert_eq!((lib.wavelengths.len(), lib.wavelengths[0], *lib.wavelengths.last().unwrap()), (180, 400.0, 2450.0));
                    } else {
                        assert_eq!(lib.wavelengths, crate::default_wavelengths());
                    }
                    assert!(lib.spectra.iter().all(|v| (0.0..=1.5).contains(v)), "{}", a.name);
                }
                "illuminant" => {
                    let s = illuminant(a.name).unwrap();
                    assert!(s.wavelengths[0] <= 400.0 && *s.wavelengths.last().unwrap() >= 700.0);
                    let max = s.values.iter().cloned().fold(0.0, f32::max);
                    assert!((max - 1.0).abs() < 1e-4, "{} peak {max}", a.name);
                }
                "sensor-bands" => {
                    let sensors = parse_sensors(a.text, Path::new(a.file)).unwrap();
                    assert!(sensors.len() >= 10, "{}", sensors.len());
                    let neon = sensors.iter().find(|s| s.name == "NEON").expect("NEON ships");
                    assert!(neon.centres.len() > 300 && neon.centres[0] < 420.0 && *neon.centres.last().unwrap() > 2400.0);
                }
                _ => {
                    parse_curves(a.text, Path::new(a.file)).unwrap();
                }
            }
        }
        assert_eq!(library("earthlib").unwrap().len(), 7260);
        assert_eq!(library("munsell").unwrap().len(), 1269);
        assert_eq!(library("earthlib-wide").unwrap().len(), 345);
        let g173 = illuminant("astm-g173-wide").unwrap();
        assert!(g173.wavelengths[0] <= 280.0 && *g173.wavelengths.last().unwrap() >= 4000.0);
        assert_eq!(library("ColorChecker").unwrap().len(), 24);
        let (wl, basis) = dyer2017_basis().unwrap();
        assert_eq!((wl.len(), basis.shape()), (31, &[6usize, 3, 31][..]));
    }

    #[test]
    fn both_library_shapes_parse_and_errors_name_lines() {
        let p = Path::new("x.csv");
        let wide = "wavelength,grass,soil\n400,0.1,0.2\n500,0.2,0.3\n";
        let lib = parse_library_csv(wide, p).unwrap();
        assert_eq!(lib.names, vec!["grass", "soil"]);
        assert_eq!(lib.spectra[[1, 1]], 0.3);
        let rows = "name,category,400,500\n\"a\",x,0.1,0.2\nb,y,0.3,0.4\n";
        let lib = parse_library_csv(rows, p).unwrap();
        assert_eq!(lib.names, vec!["a", "b"]);
        assert_eq!(lib.categories, vec!["x", "y"]);
        assert_eq!(lib.spectra[[1, 0]], 0.3);
        let bad = "name,category,400,500\na,x,0.1,oops\n";
        let e = parse_library_csv(bad, p).unwrap_err().to_string();
        assert!(e.contains("x.csv") && e.contains("line 2") && e.contains("oops"), "{e}");
        let short = "wavelength,a\n400,0.1\n500\n";
        let e = parse_library_csv(short, p).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        let dec = "wavelength,a\n500,0.1\n400,0.2\n";
        assert!(parse_library_csv(dec, p).unwrap_err().to_string().contains("does not increase"));
    }
}
