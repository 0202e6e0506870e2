//! NumPy .npy arrays.
use std::path::Path;
use crate::{Cube, Result};
use super::Layout;
pub fn read_cube(_path: &Path, _layout: Layout) -> Result<Cube> { todo!() }
pub fn write_cube(_cube: &Cube, _path: &Path) -> Result<()> { todo!() }
