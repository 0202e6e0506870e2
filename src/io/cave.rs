//! CAVE scene folders: 31 16-bit PNGs `*_ms_01.png` … `*_ms_31.png`, 400–700 nm.
use std::path::Path;
use crate::{Cube, Result};
pub fn is_cave_folder(_dir: &Path) -> bool { todo!() }
pub fn read(_dir: &Path) -> Result<Cube> { todo!() }
