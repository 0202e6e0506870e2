//! Picture tests: where what the studio draws is the point (a colormap over a band, error maps
//! on one colour scale, camera curves), the rendered window is compared with a reviewed image
//! in tests/snapshots/. Rendering is wgpu on Mesa's lavapipe, a CPU Vulkan driver, so CI needs
//! no GPU (`.ci/run` installs mesa-vulkan-drivers).
//!
//! A failing test writes `NAME.new.png` and `NAME.diff.png` beside the reviewed image. After
//! a deliberate change to the look, `UPDATE_SNAPSHOTS=1 cargo test --test snapshots` rewrites
//! them; look at every rewritten picture before committing it.
//!
//! Only what changes from run to run is pinned before a picture is taken: the frame-time
//! readout, the status message (it quotes run times) and each reconstruction's run time.

mod common;

use common::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use spectral_studio::app::document::Role;
use spectral_studio::app::Studio;
use spectral_studio::display::Colormap;

const SIZE: [f32; 2] = [1200.0, 800.0];

/// Make the next frame the same on every run: no frame times, no status message, and a fixed
/// run time for each reconstruction. Nothing else is touched.
fn pin_timings(h: &mut Harness<'static, Studio>) {
    let s = h.state_mut();
    s.frame_times.clear();
    s.messages.clear();
    for layer in &mut s.doc.layers {
        if let Role::Reconstruction { seconds, .. } = &mut layer.role {
            *seconds = 1.0;
        }
    }
    // One frame draws the pinned state; the next picture is of that frame.
    h.step();
    h.state_mut().frame_times.clear();
    h.step();
}

#[test]
fn a_band_through_viridis_with_two_pins_matching_their_plot_lines() {
    let mut h = demo_sized(SIZE);
    click_and_settle(&mut h, "demo 7: ground truth · ground truth");
    h.get_by_label("band").click();
    h.run_steps(1);
    h.state_mut().display.colormap = Colormap::Viridis;
    h.state_mut().display.band = 20;
    settle(&mut h);
    let label = "Image: demo 7: ground truth";
    click_at(&h, label, egui::vec2(-40.0, 30.0), egui::Modifiers::NONE);
    h.run_steps(1);
    click_at(&h, label, egui::vec2(50.0, -45.0), egui::Modifiers::SHIFT);
    h.run_steps(2);
    assert_eq!(h.state().pins.len(), 2);
    pin_timings(&mut h);
    h.snapshot("explore_band_viridis_two_pins");
}

#[test]
fn error_maps_of_three_methods_on_one_colour_scale_with_the_metrics_table() {
    let mut h = demo_sized(SIZE);
    // The closed-form methods only, so retraining a shipped network does not change this
    // picture (pca is ticked by default, basisnet too: untick it).
    for label in ["spline (classical)", "linear (classical)", "basisnet (learned)"] {
        h.get_by_label(label).click();
        h.run_steps(1);
    }
    let chosen: Vec<&str> = h.state().recon.chosen.iter().map(String::as_str).collect();
    assert_eq!(chosen, ["linear", "pca", "spline"]);
    click_and_settle(&mut h, "Reconstruct");
    click_and_settle(&mut h, "Compare");
    click_and_settle(&mut h, "RMSE map");
    assert!(!h.state().textures.is_building());
    pin_timings(&mut h);
    h.snapshot("compare_rmse_maps");
}

#[test]
fn camera_curves_fitted_from_the_demo_against_the_canon() {
    let mut h = demo_sized(SIZE);
    h.get_by_label("Camera response").click();
    h.run_steps(2);
    click_and_settle(&mut h, "Fit from input + ground truth");
    assert!(h.state().camera.fitted.is_some());
    pin_timings(&mut h);
    h.snapshot("camera_fitted_curves");
}
