//! The ENVI header, parsed in three stages:
//!
//! 1. **text → entries** ([`parse_entries`], in `fields.rs`): the `ENVI` magic line, then
//!    `key = value` lines, `{ ... }` values across lines, keys case-insensitive.
//! 2. **entries → checked fields** ([`Fields`]): typed getters that name the key and its line
//!    in every error ("header line 9: unknown data type 7 ...").
//! 3. **fields → typed [`Header`]** ([`Header::from_fields`]): sizes, data type, interleave,
//!    byte order, wavelengths in nm and the optional keys, all cross-checked.
//!
//! Decisions, made once here:
//! - `interleave` and (for multi-byte data) `byte order` are required: guessing them yields
//!   garbage that looks like data. An unknown interleave is an error, never BSQ.
//! - Wavelengths are converted to nm by `wavelength units`: nanometers, micrometers/microns/
//!   µm/um (×1000), millimeters (×10⁶), angstroms (×0.1). When the unit is absent or says
//!   `Unknown`/`<unspecified>`, values all in (0, 100) are taken as µm (no sensor reports
//!   wavelengths under 100 nm, none reports them above 100 µm) and the rest as nm, by the
//!   crate's one rule [`crate::cube::are_micrometres`]; the guess
//!   is recorded in [`WavelengthOrigin`]. `Index` keeps the values as band numbers.
//!   Wavenumber and frequency units are an error: they cannot be shown on a nm axis.
//! - A header without wavelengths gets band numbers `1..=bands` (ENVI numbers bands from 1),
//!   recorded as [`WavelengthOrigin::BandNumbers`].
//! - `fwhm` uses the same unit as `wavelength`.
//! - `bbl` (bad band list) is recorded, and no band is dropped: dropping would renumber the
//!   bands behind the user's back. `default bands` (1-based in the file) is stored 0-based.
//! - Data-type codes live in one table, [`DATA_TYPES`]; complex types 6 and 9 are refused.

use super::fields::HResult;
pub use super::fields::{parse_entries, Entry, Fields, HeaderError};

/// Sample types of ENVI rasters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    U8,
    I16,
    I32,
    F32,
    F64,
    U16,
    U32,
    I64,
    U64,
}

/// The one table of ENVI `data type` codes: (code, type, bytes per sample).
pub const DATA_TYPES: [(u32, DataType, usize); 9] = [
    (1, DataType::U8, 1),
    (2, DataType::I16, 2),
    (3, DataType::I32, 4),
    (4, DataType::F32, 4),
    (5, DataType::F64, 8),
    (12, DataType::U16, 2),
    (13, DataType::U32, 4),
    (14, DataType::I64, 8),
    (15, DataType::U64, 8),
];

impl DataType {
    pub fn from_code(code: u32) -> Option<DataType> {
        DATA_TYPES.iter().find(|row| row.0 == code).map(|row| row.1)
    }
    pub fn code(self) -> u32 {
        DATA_TYPES.iter().find(|row| row.1 == self).map_or(0, |row| row.0)
    }
    /// Bytes per sample.
    pub fn size(self) -> usize {
        DATA_TYPES.iter().find(|row| row.1 == self).map_or(1, |row| row.2)
    }
}

/// How bands, lines and samples are ordered in the data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interleave {
    /// Band sequential: (bands, lines, samples).
    Bsq,
    /// Band interleaved by line: (lines, bands, samples).
    Bil,
    /// Band interleaved by pixel: (lines, samples, bands).
    Bip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ByteOrder {
    /// `byte order = 0`
    LittleEndian,
    /// `byte order = 1`
    BigEndian,
}

impl ByteOrder {
    /// The byte order of the machine we run on.
    pub fn native() -> ByteOrder {
        if cfg!(target_endian = "big") {
            ByteOrder::BigEndian
        } else {
            ByteOrder::LittleEndian
        }
    }
}

/// Where [`Header::wavelengths`] came from, so callers can tell measured wavelengths from
/// guesses and placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WavelengthOrigin {
    /// The header gave wavelengths in nm.
    Nanometers,
    /// The header gave wavelengths in µm (or another length unit); converted to nm.
    Converted,
    /// No usable unit; all values < 100 so they were taken as µm and multiplied by 1000.
    AssumedMicrometers,
    /// No usable unit; values ≥ 100 so they were taken as nm.
    AssumedNanometers,
    /// `wavelength units = Index`: the values are band numbers, not wavelengths.
    Index,
    /// No `wavelength` key: band numbers 1..=bands stand in for wavelengths.
    BandNumbers,
}

impl WavelengthOrigin {
    /// True when the wavelengths are real (measured or converted), not placeholders.
    pub fn is_physical(self) -> bool {
        !matches!(self, WavelengthOrigin::Index | WavelengthOrigin::BandNumbers)
    }
}

/// A checked ENVI header.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Header {
    /// Columns per line.
    pub samples: usize,
    /// Rows.
    pub lines: usize,
    pub bands: usize,
    pub data_type: DataType,
    pub interleave: Interleave,
    pub byte_order: ByteOrder,
    /// Bytes to skip at the start of the data file.
    pub header_offset: usize,
    /// `file type`, e.g. "ENVI Standard" or "ENVI Spectral Library".
    pub file_type: Option<String>,
    /// One per spectral channel (per band; per sample for a spectral library), nm, strictly
    /// increasing. Never empty: see [`WavelengthOrigin`].
    pub wavelengths: Vec<f64>,
    pub wavelength_origin: WavelengthOrigin,
    /// Full width at half maximum, nm, one per spectral channel.
    pub fwhm: Option<Vec<f64>>,
    /// Bad band list: `true` for a good band. Recorded only; every band is read.
    pub bbl: Option<Vec<bool>>,
    /// `default bands` as 0-based band indices (the file numbers them from 1).
    pub default_bands: Option<Vec<usize>>,
    /// Stored values are divided by this on reading.
    pub reflectance_scale_factor: Option<f64>,
    /// Stored values equal to this become NaN on reading.
    pub data_ignore_value: Option<f64>,
    pub description: Option<String>,
    pub band_names: Option<Vec<String>>,
    /// Names of the spectra of a spectral library, one per line.
    pub spectra_names: Option<Vec<String>>,
    pub sensor_type: Option<String>,
}

impl Header {
    /// True for `file type = ENVI Spectral Library` (samples = bands, lines = spectra).
    pub fn is_library(&self) -> bool {
        self.file_type.as_deref().is_some_and(|t| t.trim().eq_ignore_ascii_case("envi spectral library"))
    }

    /// The number of spectral channels: `bands`, or `samples` for a spectral library.
    pub fn spectral_len(&self) -> usize {
        if self.is_library() {
            self.samples
        } else {
            self.bands
        }
    }

    /// Bytes of sample data the header promises (after the header offset).
    pub fn data_bytes(&self) -> Option<u64> {
        (self.samples as u64)
            .checked_mul(self.lines as u64)?
            .checked_mul(self.bands as u64)?
            .checked_mul(self.data_type.size() as u64)
    }

    /// Stage 3: typed parameters from checked fields.
    pub fn from_fields(fields: &Fields) -> HResult<Header> {
        let samples = fields.positive("samples")?;
        let lines = fields.positive("lines")?;
        let bands = fields.positive("bands")?;
        let data_type = parse_data_type(fields)?;
        let interleave = parse_interleave(fields)?;
        let byte_order = parse_byte_order(fields, data_type)?;
        let header_offset = fields.optional_usize("header offset")?.unwrap_or(0);
        let file_type = fields.text("file type");

        let mut header = Header {
            samples,
            lines,
            bands,
            data_type,
            interleave,
            byte_order,
            header_offset,
            file_type,
            wavelengths: Vec::new(),
            wavelength_origin: WavelengthOrigin::BandNumbers,
            fwhm: None,
            bbl: None,
            default_bands: None,
            reflectance_scale_factor: None,
            data_ignore_value: None,
            description: fields.text("description"),
            band_names: fields.list("band names"),
            spectra_names: fields.list("spectra names"),
            sensor_type: fields.text("sensor type"),
        };
        if header.data_bytes().is_none() {
            return Err(HeaderError::general(format!(
                "samples × lines × bands = {samples} × {lines} × {bands} is too large to address"
            )));
        }
        if header.is_library() && bands != 1 {
            return Err(fields.error_at("bands", "a spectral library must have bands = 1 (its spectra are lines)"));
        }
        refuse_frame_offsets(fields)?;

        let channels = header.spectral_len();
        let (wavelengths, origin, factor) = parse_wavelengths(fields, channels)?;
        header.wavelengths = wavelengths;
        header.wavelength_origin = origin;
        header.fwhm = match fields.f64_list("fwhm")? {
            Some(v) => {
                fields.expect_len("fwhm", v.len(), channels)?;
                Some(v.into_iter().map(|w| w * factor).collect())
            }
            None => None,
        };
        header.bbl = match fields.f64_list("bbl")? {
            Some(v) => {
                fields.expect_len("bbl", v.len(), channels)?;
                Some(v.into_iter().map(|flag| flag != 0.0).collect())
            }
            None => None,
        };
        header.default_bands = parse_default_bands(fields, channels)?;
        header.reflectance_scale_factor = match fields.optional_f64("reflectance scale factor")? {
            Some(k) if k == 0.0 || !k.is_finite() => {
                return Err(fields.error_at(
                    "reflectance scale factor",
                    format!("reflectance scale factor = {k}: must be a finite, non-zero number"),
                ));
            }
            other => other,
        };
        header.data_ignore_value = fields.optional_f64("data ignore value")?;
        if let Some(names) = &header.band_names {
            fields.expect_len("band names", names.len(), channels)?;
        }
        if let Some(names) = &header.spectra_names {
            fields.expect_len("spectra names", names.len(), lines)?;
        }
        Ok(header)
    }
}

fn parse_data_type(fields: &Fields) -> HResult<DataType> {
    let code = fields.required_usize("data type")?;
    match code {
        6 | 9 => Err(fields.error_at(
            "data type",
            format!("data type = {code}: complex data is not supported (only real-valued cubes)"),
        )),
        _ => u32::try_from(code).ok().and_then(DataType::from_code).ok_or_else(|| {
            let known: Vec<String> = DATA_TYPES.iter().map(|r| r.0.to_string()).collect();
            fields.error_at("data type", format!("unknown data type {code} (known: {})", known.join(", ")))
        }),
    }
}

fn parse_interleave(fields: &Fields) -> HResult<Interleave> {
    let value = fields.required("interleave")?.value.trim().to_ascii_lowercase();
    match value.as_str() {
        "bsq" => Ok(Interleave::Bsq),
        "bil" => Ok(Interleave::Bil),
        "bip" => Ok(Interleave::Bip),
        _ => Err(fields.error_at("interleave", format!("unknown interleave '{value}' (expected bsq, bil or bip)"))),
    }
}

fn parse_byte_order(fields: &Fields, data_type: DataType) -> HResult<ByteOrder> {
    match fields.optional_usize("byte order")? {
        Some(0) => Ok(ByteOrder::LittleEndian),
        Some(1) => Ok(ByteOrder::BigEndian),
        Some(other) => Err(fields.error_at("byte order", format!("byte order = {other}: expected 0 or 1"))),
        // Single bytes have no order; anything wider would be a guess.
        None if data_type.size() == 1 => Ok(ByteOrder::LittleEndian),
        None => Err(HeaderError::general(format!(
            "missing required key 'byte order' ({}-byte samples need it)",
            data_type.size()
        ))),
    }
}

/// `major frame offsets` pad every frame; supporting them is not worth it for this studio,
/// but silently ignoring them would shift every value, so non-zero ones are refused.
fn refuse_frame_offsets(fields: &Fields) -> HResult<()> {
    for key in ["major frame offsets", "minor frame offsets"] {
        if let Some(v) = fields.f64_list(key)? {
            if v.iter().any(|&x| x != 0.0) {
                return Err(fields.error_at(key, format!("non-zero '{key}' are not supported")));
            }
        }
    }
    Ok(())
}

/// Wavelengths in nm, where they came from, and the factor that converted them (for fwhm).
fn parse_wavelengths(fields: &Fields, channels: usize) -> HResult<(Vec<f64>, WavelengthOrigin, f64)> {
    let Some(values) = fields.f64_list("wavelength")? else {
        return Ok(((1..=channels).map(|b| b as f64).collect(), WavelengthOrigin::BandNumbers, 1.0));
    };
    fields.expect_len("wavelength", values.len(), channels)?;
    let unit_text = fields.text("wavelength units").unwrap_or_default();
    let (origin, factor) = match unit_text.to_lowercase().as_str() {
        "nanometers" | "nanometer" | "nm" => (WavelengthOrigin::Nanometers, 1.0),
        "micrometers" | "micrometer" | "microns" | "micron" | "um" | "µm" | "μm" => {
            (WavelengthOrigin::Converted, 1000.0)
        }
        "millimeters" | "millimeter" | "mm" => (WavelengthOrigin::Converted, 1.0e6),
        "angstroms" | "angstrom" => (WavelengthOrigin::Converted, 0.1),
        "index" => (WavelengthOrigin::Index, 1.0),
        "" | "unknown" | "unspecified" | "<unspecified>" => {
            // The one µm-or-nm rule of the crate (shared with the MATLAB readers).
            if crate::cube::are_micrometres(&values) {
                (WavelengthOrigin::AssumedMicrometers, 1000.0)
            } else {
                (WavelengthOrigin::AssumedNanometers, 1.0)
            }
        }
        _ => {
            return Err(fields.error_at(
                "wavelength units",
                format!(
                    "wavelength units '{unit_text}' cannot be converted to nm \
                     (known: nanometers, micrometers, millimeters, angstroms, index, unknown)"
                ),
            ));
        }
    };
    let nm: Vec<f64> = values.iter().map(|w| w * factor).collect();
    if let Some(i) = nm.iter().position(|w| !w.is_finite()) {
        return Err(fields.error_at("wavelength", format!("wavelength {} is {}", i + 1, values[i])));
    }
    let increasing = |i: usize| nm[i].partial_cmp(&nm[i - 1]) == Some(std::cmp::Ordering::Greater);
    if let Some(i) = (1..nm.len()).find(|&i| !increasing(i)) {
        return Err(fields.error_at(
            "wavelength",
            format!(
                "wavelengths must be strictly increasing, but value {} ({}) follows {}",
                i + 1,
                values[i],
                values[i - 1]
            ),
        ));
    }
    Ok((nm, origin, factor))
}

fn parse_default_bands(fields: &Fields, channels: usize) -> HResult<Option<Vec<usize>>> {
    let Some(values) = fields.f64_list("default bands")? else { return Ok(None) };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        if v.fract() != 0.0 || v < 1.0 || v > channels as f64 {
            return Err(
                fields.error_at("default bands", format!("default band {v} is not a band number in 1..={channels}"))
            );
        }
        out.push(v as usize - 1);
    }
    Ok(Some(out))
}

/// All three stages: header text to a checked [`Header`].
pub fn parse(text: &str) -> HResult<Header> {
    Header::from_fields(&Fields::new(parse_entries(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "ENVI\nsamples = 4\nlines = 3\nbands = 2\ndata type = 12\ninterleave = bil\nbyte order = 1\n";

    #[test]
    fn minimal_header_and_band_numbers() {
        let h = parse(MINIMAL).unwrap();
        assert_eq!((h.samples, h.lines, h.bands), (4, 3, 2));
        assert_eq!(h.data_type, DataType::U16);
        assert_eq!(h.interleave, Interleave::Bil);
        assert_eq!(h.byte_order, ByteOrder::BigEndian);
        assert_eq!(h.wavelengths, vec![1.0, 2.0]);
        assert_eq!(h.wavelength_origin, WavelengthOrigin::BandNumbers);
        assert_eq!(h.data_bytes(), Some(48));
    }

    #[test]
    fn braces_span_lines_and_keys_ignore_case() {
        let text = format!(
            "{MINIMAL}Wavelength   Units = Micrometers\nWAVELENGTH = {{\n 0.4,\n 0.5 }}\n; comment\nfwhm = {{0.01, 0.01}}\n\
             description = {{two\n  lines}}\ndefault bands = {{2}}\nbbl = {{1, 0}}\n"
        );
        let h = parse(&text).unwrap();
        assert_eq!(h.wavelengths, vec![400.0, 500.0]);
        assert_eq!(h.wavelength_origin, WavelengthOrigin::Converted);
        assert_eq!(h.fwhm, Some(vec![10.0, 10.0]));
        assert_eq!(h.description.as_deref(), Some("two\nlines"));
        assert_eq!(h.default_bands, Some(vec![1]));
        assert_eq!(h.bbl, Some(vec![true, false]));
    }

    #[test]
    fn unitless_small_wavelengths_are_micrometres() {
        let h = parse(&format!("{MINIMAL}wavelength = {{0.45, 0.55}}\n")).unwrap();
        assert_eq!(h.wavelengths, vec![450.0, 550.0]);
        assert_eq!(h.wavelength_origin, WavelengthOrigin::AssumedMicrometers);
        let h = parse(&format!("{MINIMAL}wavelength units = Unknown\nwavelength = {{450, 550}}\n")).unwrap();
        assert_eq!(h.wavelength_origin, WavelengthOrigin::AssumedNanometers);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = parse("ENVI\nsamples = 4\nlines = 3\nbands = 2\ndata type = 6\ninterleave = bsq\n").unwrap_err();
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("complex"), "{e}");
        let e = parse(&MINIMAL.replace("bil", "bsx")).unwrap_err();
        assert_eq!(e.to_string(), "header line 6: unknown interleave 'bsx' (expected bsq, bil or bip)");
        let e = parse(&MINIMAL.replace("interleave = bil\n", "")).unwrap_err();
        assert_eq!(e.to_string(), "header: missing required key 'interleave'");
        let e = parse(&format!("{MINIMAL}wavelength = {{1,\n2")).unwrap_err();
        assert_eq!(e.line, Some(8));
        let e = parse("ENVY\n").unwrap_err();
        assert!(e.message.contains("not an ENVI header"));
        let e = parse(&format!("{MINIMAL}wavelength units = Wavenumber\nwavelength = {{1, 2}}\n")).unwrap_err();
        assert!(e.message.contains("'Wavenumber' cannot be converted"), "{e}");
        let e = parse(&format!("{MINIMAL}wavelength = {{500, 400}}\n")).unwrap_err();
        assert!(e.message.contains("strictly increasing"), "{e}");
    }

    #[test]
    fn data_type_table_round_trips() {
        for (code, ty, size) in DATA_TYPES {
            assert_eq!(DataType::from_code(code), Some(ty));
            assert_eq!(ty.code(), code);
            assert_eq!(ty.size(), size);
        }
        assert_eq!(DataType::from_code(7), None);
    }
}
