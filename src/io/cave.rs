//! CAVE scene folders: 31 16-bit PNGs `*_ms_01.png` … `*_ms_31.png`, 400–700 nm.
//!
//! The CAVE archive nests each scene one folder down (`balloons_ms/balloons_ms/…`), so either
//! the folder holding the PNGs or its single subfolder is accepted. Values are the stored
//! numbers over 65535 (over 255 for an 8-bit file). A few CAVE band files are RGB(A) rather
//! than grey; their first channel is the band.

use std::path::{Path, PathBuf};

use ndarray::Array3;

use crate::{Cube, Error, Result};

/// Number of bands of a CAVE scene.
pub const BANDS: usize = 31;

/// Band number (1-based) of a file named like `*_ms_07.png`, if it is one.
fn band_number(file_name: &str) -> Option<usize> {
    let lower = file_name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".png")?;
    let (_, number) = stem.rsplit_once("_ms_")?;
    if number.len() != 2 {
        return None;
    }
    number.parse().ok().filter(|n| (1..=BANDS).contains(n))
}

fn band_files(dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| Some((band_number(e.file_name().to_str()?)?, e.path())))
        .collect()
}

/// The folder that holds the band PNGs: `dir` itself, or its single subfolder.
fn band_folder(dir: &Path) -> Option<PathBuf> {
    if !band_files(dir).is_empty() {
        return Some(dir.to_path_buf());
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    match subdirs.as_slice() {
        [only] if !band_files(only).is_empty() => Some(only.clone()),
        _ => None,
    }
}

/// Whether `dir` (or its single subfolder) holds CAVE band images.
pub fn is_cave_folder(dir: &Path) -> bool {
    dir.is_dir() && band_folder(dir).is_some()
}

/// Read a CAVE scene folder as a 31-band cube on the 400..=700 nm grid.
pub fn read(dir: &Path) -> Result<Cube> {
    let folder = band_folder(dir)
        .ok_or_else(|| Error::format(dir, "folder holds no CAVE band images (*_ms_01.png … *_ms_31.png)"))?;
    let files = band_files(&folder);
    let mut cube: Option<Array3<f32>> = None;
    for band in 1..=BANDS {
        let matches: Vec<&PathBuf> = files.iter().filter(|(b, _)| *b == band).map(|(_, p)| p).collect();
        let file = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::format(
                    &folder,
                    format!("band {band:02} is missing (no *_ms_{band:02}.png)"),
                ));
            }
            many => {
                return Err(Error::format(
                    &folder,
                    format!("band {band:02} is ambiguous: {} files end in _ms_{band:02}.png", many.len()),
                ));
            }
        };
        let image = super::image_file::read_gray(file)?;
        let (rows, cols) = image.dim();
        let data = cube.get_or_insert_with(|| Array3::zeros((BANDS, rows, cols)));
        if data.shape()[1..] != [rows, cols] {
            return Err(Error::format(
                file,
                format!("is {rows}x{cols} but band 01 is {}x{}", data.shape()[1], data.shape()[2]),
            ));
        }
        data.index_axis_mut(ndarray::Axis(0), band - 1).assign(&image);
    }
    let data = cube.ok_or_else(|| Error::format(&folder, "no bands read"))?;
    let mut cube = Cube::on_default_grid(data).map_err(|e| Error::format(&folder, e.to_string()))?;
    cube.meta.units = Some("reflectance".into());
    Ok(cube)
}

/// Write a cube of 31 bands as a CAVE folder (`NAME_ms_01.png` … 16-bit grey), values clamped
/// to [0, 1]. Each file is written atomically; `dir` is created if needed.
pub fn write(cube: &Cube, dir: &Path, name: &str) -> Result<()> {
    if cube.bands() != BANDS {
        crate::bail_invalid!("a CAVE folder holds {BANDS} bands; the cube has {}", cube.bands());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for b in 0..BANDS {
        let path = dir.join(format!("{name}_ms_{:02}.png", b + 1));
        super::image_file::write_png_gray(cube.band(b), &path, true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_numbers_from_names() {
        assert_eq!(band_number("balloons_ms_01.png"), Some(1));
        assert_eq!(band_number("Balloons_MS_31.PNG"), Some(31));
        assert_eq!(band_number("balloons_ms_32.png"), None);
        assert_eq!(band_number("balloons_ms_1.png"), None);
        assert_eq!(band_number("balloons_RGB.bmp"), None);
    }
}
