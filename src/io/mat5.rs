//! MATLAB v5 MAT-files (also compressed).
use std::path::Path;
use crate::{Cube, Result};
use super::Layout;
pub fn read_cube(_path: &Path, _key: Option<&str>, _layout: Layout) -> Result<Cube> { todo!() }
