//! Spectral physics, no learning: the shipped spectral data (cameras, illuminants, colour
//! matching functions, reflectance libraries), the camera-response convention, rendering a
//! cube to RGB, a seeded random source, synthetic scenes, and spatial degradation (blur,
//! down-sampling, noise) for fusion.

pub mod aerial;
pub mod camera;
pub mod degrade;
pub mod library;
pub mod light;
pub mod realworld;
pub mod render;
pub mod rng;
pub mod scene;
pub mod fit;
pub mod nnls;
pub mod unmix;
