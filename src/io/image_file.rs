//! RGB image files: PNG, JPEG, TIFF, 8 and 16 bit.
use std::path::Path;
use crate::{Result, RgbImage};
pub fn read_rgb(_path: &Path, _srgb: bool) -> Result<RgbImage> { todo!() }
