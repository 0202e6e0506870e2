//! ENVI raster and spectral-library files.
use std::path::{Path, PathBuf};
use crate::{Cube, Result};
use super::{Format, Subset};
pub fn header_for(_path: &Path) -> Option<PathBuf> { todo!() }
pub fn detect_kind(_path: &Path) -> Result<Format> { todo!() }
pub fn read(_path: &Path, _subset: &Subset) -> Result<Cube> { todo!() }
pub fn write(_cube: &Cube, _path: &Path) -> Result<()> { todo!() }
