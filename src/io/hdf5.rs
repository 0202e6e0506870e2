//! MATLAB v7.3 files (HDF5).
use std::path::Path;
use crate::{Cube, Result};
pub fn is_hdf5(_path: &Path) -> Result<bool> { todo!() }
pub fn read_cube(_path: &Path, _key: Option<&str>) -> Result<Cube> { todo!() }
pub fn write_cube(_cube: &Cube, _path: &Path) -> Result<()> { todo!() }
