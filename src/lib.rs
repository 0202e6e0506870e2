//! Spectral Studio: hyperspectral cubes, the physics that links them to RGB, and the
//! measures of reconstruction quality. The GUI and the CLI are thin faces over this library.

pub mod app;
pub mod bench;
pub mod cli;
pub mod cube;
pub mod display;
pub mod engine;
pub mod error;
pub mod io;
pub mod malloc_tuning;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod recon;
pub mod rgb;
pub mod spectral;
pub mod train;

pub use cube::{default_wavelengths, Cube, Metadata, Rect, Stats};
pub use error::{Error, Result};
pub use rgb::RgbImage;
