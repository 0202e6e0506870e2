//! The studio driven as a user would, through egui_kittest: widgets are found by their
//! accessible labels and clicked; assertions are on what the studio then holds and shows.
//! No file dialog is ever opened here (they would block on a desktop portal).

mod common;

use common::*;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use spectral_studio::app::Studio;
use spectral_studio::app::document::{LayerData, Role};
use spectral_studio::app::spectra::SeriesStyle;
use spectral_studio::app::Tab;
use std::time::{Duration, Instant};

const CANON: &str = "canon-eos-5d-mark-ii";

/// The active scene's reconstruction made by `method`.
fn by_method<'a>(s: &'a spectral_studio::app::Studio, method: &str) -> &'a spectral_studio::app::document::Layer {
    s.doc
        .reconstructions()
        .map(|(l, _)| l)
        .find(|l| matches!(&l.role, Role::Reconstruction { method: m, .. } if m == method))
        .unwrap_or_else(|| panic!("no {method} layer; messages {:?}", s.messages.iter().map(|m| &m.text).collect::<Vec<_>>()))
}

#[test]
fn the_demo_opens_with_its_input_ground_truth_and_an_image_view() {
    let h = demo();
    let s = h.state();
    assert!(s.doc.input().is_some(), "no input RGB");
    let (_, gt) = s.doc.ground_truth().expect("no ground truth");
    assert_eq!((gt.bands(), gt.rows(), gt.cols()), (31, 256, 256));
    assert!(s.messages.iter().all(|m| !m.is_error), "{:?}", s.messages);
    h.get_by_label("Image: demo 7: RGB (Canon)");
    h.get_by_label("Reconstruct");
}

#[test]
fn clicking_pixels_plots_their_spectra_and_shift_click_pins_more() {
    let mut h = demo();
    // Look at the ground truth so the view is a cube.
    // a cube's true-colour view is built on a job thread
    click_and_settle(&mut h, "demo 7: ground truth · ground truth");
    let label = "Image: demo 7: ground truth";
    click_at(&h, label, egui::Vec2::ZERO, egui::Modifiers::NONE);
    h.run_steps(2);
    assert_eq!(h.state().pins.len(), 1);
    let first = h.state().spectra_series();
    // one line per cube layer (ground truth and reflectance) at the picked pixel
    assert_eq!(first.len(), 2, "{:?}", first.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert_eq!(first[0].style, SeriesStyle::GroundTruth);
    let pin = h.state().pins[0];
    let (_, gt) = h.state().doc.ground_truth().unwrap();
    assert_eq!(first[0].values, gt.spectrum(pin.row, pin.col));

    click_at(&h, label, egui::vec2(40.0, 25.0), egui::Modifiers::SHIFT);
    h.run_steps(2);
    let pins = h.state().pins.clone();
    assert_eq!(pins.len(), 2, "shift-click should pin a second pixel");
    assert_ne!((pins[0].row, pins[0].col), (pins[1].row, pins[1].col));
    assert_ne!(pins[0].colour, pins[1].colour);
    assert_eq!(h.state().spectra_series().len(), 4);

    // the legend: one entry per pin (its place) and one box per layer, not one per line;
    // unticking a layer hides its lines at every pin, ticking it brings them back
    h.get_by_label(&format!("({}, {})", pins[1].col, pins[1].row));
    let other = first[1].layer;
    let other_name = h.state().doc.get(other).unwrap().name.clone();
    let checkbox = egui::accesskit::Role::CheckBox;
    assert_eq!(h.query_all_by_role_and_label(checkbox, &other_name).count() + h.query_all_by_role_and_label(checkbox, "demo 7: ground truth").count(), 2, "one legend box per layer");
    h.get_by_role_and_label(checkbox, &other_name).click();
    h.run_steps(2);
    let shown = h.state().spectra_series();
    assert_eq!(shown.len(), 2, "{:?}", shown.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert!(shown.iter().all(|s| s.layer != other));
    h.get_by_role_and_label(checkbox, &other_name).click();
    h.run_steps(2);
    assert_eq!(h.state().spectra_series().len(), 4);

    // a plain click replaces the pins
    click_at(&h, label, egui::vec2(-30.0, 0.0), egui::Modifiers::NONE);
    h.run_steps(2);
    assert_eq!(h.state().pins.len(), 1);
    h.get_by_label("Clear pins").click();
    h.run_steps(2);
    assert!(h.state().pins.is_empty());
}

#[test]
fn reconstructing_adds_scored_layers_shown_in_compare_with_error_maps() {
    let mut h = demo_with_three_reconstructions();
    let s = h.state();
    let names: Vec<String> = s.doc.reconstructions().map(|(l, _)| l.name.clone()).collect();
    for m in ["spline", "pca", "basisnet"] {
        // a result is named by method, camera assumed and options
        assert!(names.contains(&format!("{m} · {CANON}")), "{m} missing from {names:?}; messages {:?}", s.messages);
    }
    for (layer, _) in s.doc.reconstructions() {
        let score = s.scores.get(&layer.id).unwrap_or_else(|| panic!("{} was not scored", layer.name));
        assert!(score.metrics.mrae.is_finite() && score.metrics.mrae < 2.0, "{}: {:?}", layer.name, score.metrics);
        assert!(matches!(layer.role, Role::Reconstruction { seconds, .. } if seconds > 0.0));
    }
    // pca must beat the spline baseline on this scene, as the held-out figures say it does
    let mrae = |method: &str| s.scores[&by_method(s, method).id].metrics.mrae;
    assert!(mrae("pca") < mrae("spline"), "pca {} spline {}", mrae("pca"), mrae("spline"));

    click_and_settle(&mut h, "Compare");
    for m in ["spline", "pca", "basisnet"] {
        h.get_by_label(&format!("Image: {m} · {CANON}"));
    }
    h.get_by_label("MRAE (asc)");
    // error maps are built on job threads: wait for them like for any job
    click_and_settle(&mut h, "RMSE map");
    assert!(!h.state().textures.is_building());
    assert_eq!(h.state().display.mode, spectral_studio::app::view::DisplayMode::Error(spectral_studio::app::view::ErrorMetric::Rmse));
    // every panel rendered its map: no "no ground truth" complaint anywhere
    assert!(h.query_by_label_contains("no ground truth").is_none());
    // linked picks: a click in one view pins the same pixel for all
    click_at(&h, &format!("Image: pca · {CANON}"), egui::Vec2::ZERO, egui::Modifiers::NONE);
    h.run_steps(2);
    let series = h.state().spectra_series();
    assert_eq!(series.iter().filter(|s| s.style == SeriesStyle::Reconstruction).count(), 3);
}

#[test]
fn swipe_compare_shows_two_layers_in_one_view_split_where_the_divider_is_dragged() {
    let mut h = demo_with_three_reconstructions();
    h.get_by_label("Compare").click();
    h.run_steps(2);
    click_and_settle(&mut h, "swipe");
    // ground truth on the left, the first reconstruction on the right
    let view = h.get_by_label_contains("Swipe: demo 7: ground truth | ").rect();
    assert!(h.query_by_label(&format!("Image: pca · {CANON}")).is_none(), "the grid should be gone");
    assert!((h.state().compare.split - 0.5).abs() < 1e-6);
    let handle = h.get_by_label("Swipe divider").rect().center();
    assert!((handle.x - view.center().x).abs() < 2.0, "divider starts in the middle");
    drag(&mut h, handle, handle + egui::vec2(view.width() * 0.25, 0.0));
    let split = h.state().compare.split;
    assert!((split - 0.75).abs() < 0.03, "divider at {split}, expected 0.75");
    let moved = h.get_by_label("Swipe divider").rect().center();
    assert!((moved.x - (view.left() + 0.75 * view.width())).abs() < 0.03 * view.width());
    // dragging the divider is not a pan: the image stayed where it was
    assert!(h.state().pins.is_empty());
    // a click on either side still picks, for every layer at once
    // (left of the divider, inside the image: the view is wider than the square scene)
    click(&h, view.center() - egui::vec2(view.height() * 0.2, 0.0), egui::Modifiers::NONE);
    h.run_steps(2);
    assert_eq!(h.state().pins.len(), 1);
    assert_eq!(h.state().spectra_series().iter().filter(|s| s.style == SeriesStyle::Reconstruction).count(), 3);
}

#[test]
fn the_fitted_camera_is_offered_to_the_reconstruct_panel_and_used() {
    let mut h = demo();
    h.get_by_label("Camera response").click();
    h.run_steps(2);
    click_and_settle(&mut h, "Fit from input + ground truth");
    let fitted_name = "fitted from demo 7: RGB (Canon)";
    assert!(h.state().camera.assumable().iter().any(|c| c.name == fitted_name));
    h.get_by_label("camera assumed").click();
    h.run_steps(2);
    h.get_by_label(fitted_name).click();
    h.run_steps(2);
    assert_eq!(h.state().recon.camera.name, fitted_name);
    h.state_mut().recon.chosen = ["pca".to_string()].into_iter().collect();
    click_and_settle(&mut h, "Reconstruct");
    let s = h.state();
    let layer = by_method(s, "pca");
    assert_eq!(layer.name, format!("pca · {fitted_name}"), "the layer names the camera assumed");
    let mrae = s.scores[&layer.id].metrics.mrae;
    // fitted curves are close to the true ones, so pca under them is still far better than chance
    assert!(mrae.is_finite() && mrae < 0.3, "pca with the fitted camera: MRAE {mrae}");
}

#[test]
fn the_camera_estimated_from_the_picture_alone_is_plotted_and_offered_to_every_method() {
    let mut h = demo();
    h.get_by_label("Camera response").click();
    h.run_steps(2);
    click_and_settle(&mut h, "Estimate from input alone (usr)");
    let s = h.state();
    assert!(s.messages.iter().all(|m| !m.is_error), "{:?}", s.messages);
    let est = s.camera.estimated.as_ref().expect("no estimated curves (is models/usr shipped?)");
    for ch in 0..3 {
        let sum: f32 = est.curves[ch].iter().sum();
        assert!((sum - 1.0).abs() < 1e-3 && est.curves[ch].iter().all(|v| *v >= 0.0), "channel {ch} sums to {sum}");
    }
    let name = "estimated by usr from demo 7: RGB (Canon)";
    assert!(s.camera.assumable().iter().any(|c| c.name == name), "not offered to the Reconstruct panel");
    h.get_by_label("camera assumed").click();
    h.run_steps(2);
    h.get_by_label(name).click();
    h.run_steps(2);
    assert_eq!(h.state().recon.camera.name, name);
}

#[test]
fn sorting_the_metrics_table_by_a_column_orders_its_rows() {
    let mut h = demo_with_three_reconstructions();
    let s = h.state();
    let rows = s.compare.rows(&s.doc, &s.scores);
    let mrae: Vec<f64> = rows.iter().map(|r| r.metrics.unwrap().mrae).collect();
    assert!(mrae.windows(2).all(|w| w[0] <= w[1]), "ascending MRAE expected: {mrae:?}");
    h.get_by_label("Compare").click();
    h.run_steps(2);
    h.get_by_label("PSNR dB").click();
    h.run_steps(2);
    let s = h.state();
    let psnr: Vec<f64> = s.compare.rows(&s.doc, &s.scores).iter().map(|r| r.metrics.unwrap().psnr).collect();
    assert!(psnr.windows(2).all(|w| w[0] >= w[1]), "best PSNR first: {psnr:?}");
    // MPSNR (mean per-band PSNR) sorts best first too, and is in the exported CSV
    h.get_by_label("MPSNR dB").click();
    h.run_steps(2);
    let s = h.state();
    let rows = s.compare.rows(&s.doc, &s.scores);
    let mpsnr: Vec<f64> = rows.iter().map(|r| r.metrics.unwrap().mpsnr).collect();
    assert!(mpsnr.iter().all(|v| v.is_finite()) && mpsnr.windows(2).all(|w| w[0] >= w[1]), "best MPSNR first: {mpsnr:?}");
    let csv = spectral_studio::app::metrics_csv(&rows);
    assert!(csv.starts_with("method,mrae,rmse,psnr_db,mpsnr_db,ssim,"), "{csv}");
    assert_eq!(csv.lines().nth(1).unwrap().split(',').count(), 9);
}

#[test]
fn band_view_switches_bands_and_reports_the_wavelength() {
    let mut h = demo();
    h.get_by_label("demo 7: ground truth · ground truth").click();
    h.run_steps(1);
    h.get_by_label("band").click();
    h.run_steps(2);
    h.state_mut().display.band = 30;
    h.run_steps(2);
    // (the Display panel names the cube's range, "400-700 nm", and the band slider its band)
    let elsewhere = h.query_all_by_label_contains("700 nm").count();
    h.get_by_label("Image: demo 7: ground truth").hover();
    h.run_steps(2);
    // the status bar's readout names the band's wavelength and the pixel's value
    assert_eq!(h.query_all_by_label_contains("700 nm").count(), elsewhere + 1, "no readout of band 31");
    let err = h.query_by_label_contains("no ground truth");
    assert!(err.is_none());
    // the readout is of the pixel under the pointer: it goes when the pointer leaves the view
    h.get_by_label("Layers").hover();
    h.run_steps(2);
    assert_eq!(h.query_all_by_label_contains("700 nm").count(), elsewhere, "the readout outlived the hover");
}

#[test]
fn unmixing_the_demo_reflectance_gives_maps_that_sum_to_one() {
    let mut h = demo();
    h.get_by_label("Abundances").click();
    h.run_steps(2);
    click_and_settle(&mut h, "Unmix demo 7: reflectance");
    let result = h.state().abundances.of_active_scene(&h.state().doc).expect("no unmixing result").maps.clone();
    assert!(!result.names.is_empty());
    let (k, rows, cols) = result.abundances.dim();
    let (r, c) = (rows / 2, cols / 3);
    let sum: f32 = (0..k).map(|i| result.abundances[[i, r, c]]).sum();
    assert!((sum - 1.0).abs() < 1e-2, "abundances sum to {sum}");
    h.get_by_label(&format!("Image: {}", result.names[0]));
    h.get_by_label("Image: residual RMSE");
    // hovering a map reads out every material's abundance at the pixel
    h.get_by_label(&format!("Image: {}", result.names[0])).hover();
    h.run_steps(2);
    let (row, col) = h.state().hovered.expect("a pixel under the pointer");
    let readout = h.state().hover_readout().unwrap_or_default();
    let want = format!("{} {:.3}", result.names[0], result.abundances[[0, row, col]]);
    assert!(readout.contains("abundances: ") && readout.contains(&want), "{readout:?} lacks {want:?}");
}

#[test]
fn an_unmixing_belongs_to_the_scene_of_the_cube_it_unmixed() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = [("a.npy", 0.3f32), ("b.npy", 0.6)].iter().map(|(n, v)| {
        let path = dir.path().join(n);
        let data: Vec<f32> = (0..10 * 12 * 31).map(|i| v + (i % 7) as f32 / 100.0).collect();
        spectral_studio::io::npy::write_f32(&path, &[10, 12, 31], &data).unwrap();
        path
    }).collect();
    let mut h = studio(files, None);
    settle(&mut h);
    click_and_settle(&mut h, "Scene: a.npy");
    h.get_by_label("Abundances").click();
    h.run_steps(2);
    // only the active scene's cubes are offered
    assert!(h.query_by_label("Unmix b.npy").is_none());
    click_and_settle(&mut h, "Unmix a.npy");
    h.get_by_label_contains("a.npy, FCLS over");
    let a = h.state().doc.layers.iter().find(|l| l.name == "a.npy").unwrap().id;
    assert_eq!(h.state().abundances.of_active_scene(&h.state().doc).map(|r| r.layer), Some(a));
    // the other scene has none of it
    click_and_settle(&mut h, "Scene: b.npy");
    h.get_by_label("No unmixing in this scene yet.");
    h.get_by_label("Unmix b.npy");
    assert!(h.query_by_label("Unmix a.npy").is_none());
    // and coming back shows it again
    click_and_settle(&mut h, "Scene: a.npy");
    h.get_by_label_contains("a.npy, FCLS over");
}

#[test]
fn an_inss_model_reads_named_abundances_and_its_signature_from_the_rgb() {
    // a tiny model, two training steps: what is checked is the studio's path, not its quality
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(["train", "--method", "inss", "--world", "2", "--size", "64", "--patch", "64", "--width", "4", "--steps", "2", "--batch", "2", "--validate-every", "2", "--name", "tiny-inss", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let mut h = demo();
    h.get_by_label("Abundances").click();
    h.run_steps(2);
    // the shipped model is offered; a model the user opens is preferred to it
    h.get_by_label("From the RGB (INSS)");
    h.state_mut().recon.add_checkpoint(&dir.path().join("tiny-inss.safetensors"));
    h.run_steps(2);
    click_and_settle(&mut h, "From the RGB (INSS)");
    assert!(h.state().messages.iter().all(|m| !m.is_error), "{:?}", h.state().messages.iter().map(|m| &m.text).collect::<Vec<_>>());
    let found = h.state().abundances.of_active_scene(&h.state().doc).expect("an inss result");
    assert!(found.method.starts_with("INSS (model tiny-inss"), "{}", found.method);
    assert_eq!(found.layer, h.state().doc.input().unwrap().0.id, "the abundances are the RGB input's");
    let maps = found.maps.clone();
    // the 11 strongest spectra and one map of the other 334
    assert_eq!(maps.names.len(), 12);
    assert_eq!(maps.names[11], "the other 334 spectra");
    let (k, rows, cols) = maps.abundances.dim();
    let sum: f32 = (0..k).map(|i| maps.abundances[[i, rows / 2, cols / 3]]).sum();
    assert!((sum - 1.0).abs() < 1e-4, "maps sum to {sum}");
    let (w, t, sun) = found.signature.clone().expect("the signature");
    assert_eq!((w.len(), t.len(), sun.len()), (31, 31, 31));
    // shown: the maps by name, the leftover map, the signature plot's lines
    h.get_by_label(&format!("Image: {}", maps.names[0]));
    h.get_by_label("Image: nonlinear share");
    h.get_by_label_contains("INSS (model tiny-inss");
    // by class: the 345 spectra summed into earthlib's five classes
    click_and_settle(&mut h, "by class");
    click_and_settle(&mut h, "From the RGB (INSS)");
    let found = h.state().abundances.of_active_scene(&h.state().doc).expect("an inss result");
    assert_eq!(found.maps.names.len(), 5, "{:?}", found.maps.names);
    assert!(found.maps.names.iter().any(|n| n.starts_with("vegetation (") && n.ends_with(" spectra)")), "{:?}", found.maps.names);
    h.get_by_label_contains("summed into 5 classes");
}

#[test]
fn fitting_the_camera_recovers_curves_close_to_the_canon() {
    let mut h = demo();
    h.get_by_label("Camera response").click();
    h.run_steps(2);
    click_and_settle(&mut h, "Fit from input + ground truth");
    let s = h.state();
    let fitted = s.camera.fitted.as_ref().expect("no fitted curves");
    let canon = s.camera.sets.iter().find(|c| c.name == "canon-eos-5d-mark-ii").unwrap();
    // the demo's RGB is clean Canon RGB of its cube: the fit must land near the true curves
    for ch in 0..3 {
        let err: f32 = fitted.curves[ch].iter().zip(&canon.curves[ch]).map(|(a, b)| (a - b).abs()).sum();
        assert!(err < 0.5, "channel {ch}: L1 distance {err}");
    }
    // the demo knows its camera, so the fit is reported against it
    let report = s.messages.iter().find(|m| m.text.starts_with("camera fitted")).expect("a fit report");
    let rmse: f64 = report.text.split("curve RMSE against the true canon-eos-5d-mark-ii: ").nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("{}", report.text));
    assert!(rmse < 0.01, "{rmse}");
}

#[test]
fn a_training_run_starts_reports_steps_and_can_be_stopped() {
    let models = tempfile::tempdir().unwrap();
    let mut h = studio(Vec::new(), Some(models.path().to_path_buf()));
    settle(&mut h);
    h.get_by_label("Training").click();
    h.run_steps(2);
    {
        let s = &mut h.state_mut().training.settings;
        s.scenes = 2;
        s.size = 32;
        s.steps = 100_000;
        s.batch = 1;
        s.name = "kittest-run".into();
    }
    h.get_by_label("Start training").click();
    h.run_steps(1);
    let start = Instant::now();
    while h.state().training.runs[0].losses.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(300), "no training step reported; status {}", h.state().training.runs[0].status);
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    click_and_settle(&mut h, "Stop training");
    let run = &h.state().training.runs[0];
    assert!(!run.is_running());
    assert!(run.status.contains("stopped"), "{}", run.status);
    assert!(run.losses.iter().all(|[_, l]| l.is_finite()));
    assert!(run.losses.len() < 100_000);
    // stopping wrote a checkpoint at the last step done, so Resume has one to continue from
    let stopped_at = run.losses.last().unwrap()[0] as usize;
    let ckpt = run.last_checkpoint().cloned().expect("a checkpoint written on Stop");
    assert!(ckpt.is_file(), "{}", ckpt.display());
    let ckpt_step = spectral_studio::app::training::checkpoint_step(&ckpt).unwrap();
    assert!(ckpt_step >= 1 && ckpt_step <= stopped_at, "checkpoint {ckpt_step}, stopped at {stopped_at}");
    let first_dir = run.out_dir.clone();
    // Resume continues from there: the loss curve never steps back
    h.get_by_label("Resume").click();
    h.run_steps(1);
    let start = Instant::now();
    while h.state().training.runs[0].losses.len() <= stopped_at + 1 {
        assert!(start.elapsed() < Duration::from_secs(300), "the resumed run reported no step; status {}", h.state().training.runs[0].status);
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    click_and_settle(&mut h, "Stop training");
    let steps: Vec<f64> = h.state().training.runs[0].losses.iter().map(|p| p[0]).collect();
    assert!(steps.windows(2).all(|w| w[1] > w[0]), "the curve steps back: {steps:?}");
    assert_eq!(h.state().training.runs[0].out_dir, first_dir, "a resume stays in the run's folder");
    // a new run of the same name gets a folder of its own
    h.get_by_label("Start training").click();
    h.run_steps(2);
    click_and_settle(&mut h, "Stop training");
    let second = &h.state().training.runs[1];
    assert_ne!(second.out_dir, first_dir);
    assert!(h.state().messages.iter().any(|m| m.text.contains("exists")), "the new folder is announced");
}

/// Open the combo box showing `shown` and pick `choice` from its list.
fn pick_from_combo(h: &mut Harness<'static, Studio>, shown: &str, choice: &str) {
    use egui::accesskit::Role;
    h.get_by(|n| n.role() == Role::ComboBox && n.value().as_deref() == Some(shown)).click();
    h.run_steps(3);
    click_and_settle(h, choice);
}

#[test]
fn inss_trains_from_the_training_panel_on_the_open_cube_with_its_own_bands() {
    use spectral_studio::train::data::DataSource;
    let dir = tempfile::tempdir().unwrap();
    // a small cube over 400-1180 nm (40 bands): two materials, shaded down the rows
    let wavelengths: Vec<f32> = (0..40).map(|b| 400.0 + 20.0 * b as f32).collect();
    let data = ndarray::Array3::from_shape_fn((40, 96, 80), |(b, r, c)| {
        let w = wavelengths[b] / 1000.0;
        (if c < 40 { 0.2 + 0.3 * (w * 3.0).sin().abs() } else { 0.5 - 0.15 * w }) * (1.0 - r as f32 / 200.0)
    });
    let path = dir.path().join("field.hdr");
    spectral_studio::io::save(&spectral_studio::Cube::new(data, wavelengths).unwrap(), &path).unwrap();
    let models = tempfile::tempdir().unwrap();
    let mut h = studio(vec![path.clone()], Some(models.path().to_path_buf()));
    settle(&mut h);
    h.get_by_label("Training").click();
    h.run_steps(2);
    assert!(h.query_by_label_contains("Use the open cube").is_none(), "offered to basisnet, which needs a folder");
    // choosing inss in the method list brings its settings: few, slow steps at a low rate
    pick_from_combo(&mut h, "basisnet", "inss");
    let s = &h.state().training.settings;
    assert_eq!((s.method.name(), s.steps, s.batch, s.lr, s.name.as_str()), ("inss", 300, 2, 3e-4, "my-inss"));
    h.get_by_label("aerial scenes");
    click_and_settle(&mut h, "cubes (folder or file)");
    click_and_settle(&mut h, "Use the open cube (field.hdr)");
    let cfg = h.state().training.settings.config().unwrap();
    assert!(matches!(&cfg.data, DataSource::Folder { path: p } if *p == path), "{:?}", cfg.data);
    // a real run: two steps of a small model on the cube, its bands kept
    {
        let s = &mut h.state_mut().training.settings;
        (s.steps, s.name) = (2, "kittest-inss".into());
    }
    click_and_settle(&mut h, "Start training");
    let start = Instant::now();
    while h.state().training.runs[0].is_running() {
        assert!(start.elapsed() < Duration::from_secs(600), "the run did not finish; status {}", h.state().training.runs[0].status);
        h.step();
        std::thread::sleep(Duration::from_millis(50));
    }
    h.run_steps(2);
    let run = &h.state().training.runs[0];
    assert!(run.status.starts_with("finished"), "{}; messages {:?}", run.status, h.state().messages.iter().map(|m| &m.text).collect::<Vec<_>>());
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(models.path().join("kittest-inss.json")).unwrap()).unwrap();
    assert_eq!(card["architecture"], "inss");
    assert_eq!(card["wavelengths"].as_array().unwrap().len(), 40, "the model keeps the cube's bands");
    // back to another method: its own settings return and aerial scenes go
    pick_from_combo(&mut h, "inss", "basisnet");
    assert_eq!(h.state().training.settings.lr, 2e-3);
    assert!(h.query_by_label("aerial scenes").is_none());
}

#[test]
fn a_short_training_run_installs_a_model_that_joins_the_reconstruct_panel() {
    let models = tempfile::tempdir().unwrap();
    let mut h = studio(Vec::new(), Some(models.path().to_path_buf()));
    settle(&mut h);
    h.get_by_label("Training").click();
    h.run_steps(2);
    {
        let s = &mut h.state_mut().training.settings;
        s.method = spectral_studio::models::Architecture::Linear;
        s.scenes = 2;
        s.size = 32;
        s.name = "kittest-linear".into();
    }
    click_and_settle(&mut h, "Start training");
    assert!(models.path().join("kittest-linear.json").is_file(), "messages {:?}", h.state().messages);
    // The panel lists models of the user folder; this test's folder is not the user's, so the
    // registry is asked directly with it on the search path.
    std::env::set_var("SPECTRAL_STUDIO_MODELS", models.path());
    h.state_mut().recon.refresh();
    h.run_steps(2);
    h.get_by_label("kittest-linear (classical)");
}

#[test]
fn a_bad_file_gives_a_readable_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.npy");
    std::fs::write(&bad, b"this is not an npy file").unwrap();
    let mut h = studio(vec![bad.clone()], None);
    settle(&mut h);
    let s = h.state();
    let error = s.messages.iter().find(|m| m.is_error).expect("no error shown");
    assert!(error.text.contains("broken.npy"), "{}", error.text);
    assert!(s.doc.layers.is_empty());
    h.get_by_label_contains("broken.npy");
}

#[test]
fn a_scene_folder_opens_with_its_cube_paired_as_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scene");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(["scene", "--seed", "3", "--size", "48x40", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let mut h = studio(vec![out.join("rgb.png"), out.join("cube.npy")], None);
    settle(&mut h);
    let s = h.state();
    let (input, _) = s.doc.input().expect("rgb not the input");
    assert!(matches!(input.data, LayerData::Rgb(_)));
    let (gt, cube) = s.doc.ground_truth().expect("cube not paired as ground truth");
    assert_eq!(gt.name, "cube.npy");
    assert_eq!((cube.rows(), cube.cols()), (48, 40));
    assert_eq!(s.tab, Tab::Explore);
}

#[test]
fn a_dropped_pytorch_checkpoint_joins_the_reconstruct_panel_and_runs() {
    // The tiny MST++ checkpoint of tests/fixtures/mstpp (4 bands), with a card naming them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-mstpp.pth");
    std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mstpp/tiny.pth"), &path).unwrap();
    let tensors = spectral_studio::recon::pytorch::read_state_dict(&path).unwrap();
    let (architecture, config) = spectral_studio::recon::pytorch::infer_architecture(&path, &tensors).unwrap();
    let card = spectral_studio::recon::card::ModelCard {
        name: "tiny-mstpp".into(),
        architecture,
        config,
        wavelengths: vec![400.0, 500.0, 600.0, 700.0],
        camera: spectral_studio::recon::card::ANY_CAMERA.into(),
        input_mean: None,
        data: "random weights".into(),
        command: String::new(),
        training: None,
        metrics: None,
        notes: None,
    };
    card.save(&path.with_extension("json")).unwrap();

    let mut h = demo();
    let layers = h.state().doc.layers.len();
    h.input_mut().dropped_files.push(std::sync::Arc::new(DroppedPath(path.clone())));
    h.run_steps(2);
    let s = h.state();
    assert!(s.recon.chosen.contains("tiny-mstpp"), "{:?}", s.recon.chosen);
    assert!(s.messages.iter().any(|m| !m.is_error && m.text.contains("tiny-mstpp.pth")), "{:?}", s.messages);
    assert_eq!(s.doc.layers.len(), layers, "a checkpoint is no image: no layer added");
    h.get_by_label("tiny-mstpp (learned)");
    click_and_settle(&mut h, "Reconstruct");
    let s = h.state();
    let (layer, cube) = s.doc.reconstructions().find(|(l, _)| l.name.starts_with("tiny-mstpp · ")).unwrap_or_else(|| panic!("no tiny-mstpp layer; messages {:?}", s.messages));
    assert_eq!(cube.bands(), 4, "{}", layer.name);
}

/// A file dropped on the window, as the windowing integration hands it to egui.
#[derive(Debug)]
struct DroppedPath(std::path::PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_simulated_pair_fuses_into_a_scored_layer_with_the_learned_kernel_beside_the_true_one() {
    let mut h = demo();
    h.get_by_label("Fusion").click();
    h.run_steps(2);
    {
        let f = &mut h.state_mut().fusion;
        f.steps = 2;
        f.scale = 8;
    }
    click_and_settle(&mut h, "Simulate a pair");
    let (rgb, cube) = (h.state().fusion.rgb.expect("the pair's RGB is chosen"), h.state().fusion.cube.expect("the pair's cube is chosen"));
    assert_eq!(h.state().doc.get(cube).unwrap().data.rows_cols(), (32, 32));
    assert_eq!(h.state().doc.get(rgb).unwrap().data.rows_cols(), (256, 256));
    h.get_by_label("Fuse").click();
    h.run_steps(2);
    // While it runs, the side panel's Jobs lists it (the fusion module alone takes far longer
    // than two frames on the demo's 256 × 256 pair).
    assert!(h.state().fusion.run.as_ref().is_some_and(|r| r.is_running()), "the fusion finished within two frames");
    h.get_by_label_contains("fuse ×8 on cpu (");
    settle(&mut h);
    let s = h.state();
    let run = s.fusion.run.as_ref().unwrap();
    assert!(run.status.starts_with("finished"), "{}; messages {:?}", run.status, s.messages);
    assert_eq!(run.losses.len(), 2);
    assert_eq!(run.kernel.as_ref().map(|k| k.dim()), Some((32, 32)));
    let (layer, fused) = s.doc.reconstructions().find(|(l, _)| l.name.starts_with("ual fusion ×8")).expect("the fused layer");
    assert_eq!((fused.bands(), fused.rows(), fused.cols()), (31, 256, 256));
    let score = s.scores.get(&layer.id).expect("the fused layer is scored against the ground truth");
    assert!(score.metrics.psnr.is_finite());
    h.get_by_label("kernel it ended with");
    h.get_by_label("true kernel (motion:9,30)");
    // By default the result went through the scene-subspace layer of rank 4; with the layer
    // off (the paper's UAL) the same run gives a layer of its own, scored and less sharp.
    assert!(layer.name.contains("subspace 4"), "{}", layer.name);
    let layered = score.metrics.psnr;
    h.get_by_label("scene subspace");
    h.state_mut().fusion.subspace = spectral_studio::recon::fusion::SubspaceChoice::Off;
    h.get_by_label("Fuse").click();
    settle(&mut h);
    let s = h.state();
    let (paper, _) = s.doc.reconstructions().find(|(l, _)| l.name.starts_with("ual fusion ×8") && !l.name.contains("subspace")).expect("the paper's UAL layer");
    let psnr = s.scores.get(&paper.id).expect("scored").metrics.psnr;
    assert!(layered > psnr + 1.0, "with the layer {layered:.2} dB, without {psnr:.2} dB");
}

#[test]
fn a_cube_over_the_memory_cap_opens_from_its_overview_and_reads_spectra_and_tiles_from_the_file() {
    use spectral_studio::app::StudioOptions;
    use spectral_studio::io::{self, OpenOptions};
    // 16 bands (400–700 nm) × 600 × 500, float32 BIP: 19 MB, over a 1 MiB cap.
    let (bands, rows, cols) = (16usize, 600usize, 500usize);
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::with_capacity(bands * rows * cols * 4);
    for r in 0..rows {
        for c in 0..cols {
            for b in 0..bands {
                let v = 0.1 + 0.5 * ((r / 40 + c / 40) % 3) as f32 / 3.0 + 0.01 * b as f32 + 0.0001 * (c % 7) as f32;
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    std::fs::write(dir.path().join("big.img"), bytes).unwrap();
    let wl: Vec<String> = (0..bands).map(|b| (400 + 20 * b).to_string()).collect();
    let header = format!("ENVI\nsamples = {cols}\nlines = {rows}\nbands = {bands}\nheader offset = 0\ndata type = 4\ninterleave = bip\nbyte order = 0\nwavelength = {{{}}}\n", wl.join(", "));
    std::fs::write(dir.path().join("big.hdr"), header).unwrap();
    let path = dir.path().join("big.hdr");
    let options = StudioOptions { files: vec![path.clone()], models_dir: None, recent_file: None, memory_cap: Some(1 << 20), file_dialogs: Some(false) };
    let mut h = with_options(options, WINDOW);
    settle(&mut h);
    let s = h.state();
    assert!(s.messages.iter().all(|m| !m.is_error), "{:?}", s.messages.iter().map(|m| &m.text).collect::<Vec<_>>());
    let layer = s.doc.layers.first().expect("the cube opened").clone();
    let LayerData::Large(large) = &layer.data else { panic!("a cube over the cap opens read-on-demand") };
    assert_eq!(layer.data.rows_cols(), (rows, cols));
    assert_eq!(large.overview.step, 2, "300 000 pixels over the 262 144-pixel overview budget");
    h.get_by_label_contains("read on demand");
    // The fitted view magnifies the overview, so a full-resolution tile is read (once the
    // overview is on screen) and shown over it.
    settle(&mut h);
    let tile = h.state().details.shown_region(layer.id).cloned().expect("a tile over the overview");
    assert_eq!(tile.step, 1);

    // A click reads the pixel's spectrum from the file on a job; the plot then shows it.
    click_at(&h, "Image: big.hdr", egui::vec2(13.0, -7.0), egui::Modifiers::NONE);
    h.run_steps(1);
    settle(&mut h);
    let pin = h.state().pins[0];
    let series = h.state().spectra_series();
    assert_eq!(series.len(), 1, "{:?}", series.iter().map(|s| &s.name).collect::<Vec<_>>());
    let whole = io::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(series[0].values, whole.spectrum(pin.row, pin.col));
    assert_eq!(series[0].wavelengths, whole.wavelengths);

    // A right-drag selects a region; its statistics are read from the file by a job.
    let centre = h.get_by_label("Image: big.hdr").rect().center();
    drag_with(&mut h, egui::PointerButton::Secondary, centre - egui::vec2(40.0, 30.0), centre + egui::vec2(40.0, 30.0));
    settle(&mut h);
    let (r0, c0, r1, c1) = h.state().roi.expect("the right-drag selected a region");
    let (mean, std) = whole.roi_stats(spectral_studio::Rect { row: r0, col: c0, height: r1 + 1 - r0, width: c1 + 1 - c0 }).unwrap();
    let series = h.state().spectra_series();
    let got = series.iter().find(|s| s.name.ends_with("mean")).expect("a region mean series");
    for (g, m) in got.values.iter().zip(&mean) {
        assert!((g - m).abs() < 1e-5, "region mean {g} vs {m}");
    }
    let upper = series.iter().find(|s| s.name.ends_with("+1σ")).unwrap();
    assert!((upper.values[3] - (mean[3] + std[3])).abs() < 1e-5);
}

#[test]
fn two_scenes_keep_their_results_spectra_and_scores_apart() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, size) in [("3", "48x40"), ("4", "40x56")] {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
            .args(["scene", "--seed", seed, "--size", size, "-o"])
            .arg(dir.path().join(format!("s{seed}")))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let files = ["s3/rgb.png", "s3/cube.npy", "s4/rgb.png", "s4/cube.npy"].map(|f| dir.path().join(f)).to_vec();
    let mut h = studio(files, None);
    settle(&mut h);
    let s = h.state();
    assert_eq!(s.doc.scenes.len(), 2, "{:?}", s.doc.scenes);
    for scene in &s.doc.scenes {
        assert!(s.doc.input_of(scene.id).is_some() && s.doc.ground_truth_of(scene.id).is_some(), "{} is not paired", scene.name);
    }
    let names: Vec<String> = s.doc.scenes.iter().map(|sc| sc.name.clone()).collect();
    assert_eq!(names, ["rgb.png", "s4/rgb.png"], "scenes of the same file name are told apart by folder");
    // pca in each scene: the second does not replace the first
    h.state_mut().recon.chosen = ["pca".to_string()].into_iter().collect();
    click_and_settle(&mut h, "Reconstruct");
    click_and_settle(&mut h, "Scene: rgb.png");
    click_and_settle(&mut h, "Reconstruct");
    let s = h.state();
    for scene in &s.doc.scenes {
        let results: Vec<_> = s.doc.layers_of(scene.id).filter(|l| l.is_reconstruction()).collect();
        assert_eq!(results.len(), 1, "{}: {:?}; messages {:?}", scene.name, results.iter().map(|l| &l.name).collect::<Vec<_>>(), s.messages.iter().map(|m| &m.text).collect::<Vec<_>>());
        let (gt, cube) = s.doc.ground_truth_of(scene.id).unwrap();
        let score = s.scores.get(&results[0].id).expect("scored");
        assert_eq!(score.gt, gt.id, "{} scored against its own ground truth", scene.name);
        assert_eq!(s.doc.get(results[0].id).and_then(|l| l.data.cube()).map(|c| (c.rows(), c.cols())), Some((cube.rows(), cube.cols())));
    }
    // a pick in the active scene plots that scene's cubes only: its ground truth and its pca
    // (the view shows the scene's first layer, its RGB; layer names repeat across scenes, so
    // the view is found by the active layer's name)
    let active = s.doc.active_scene.unwrap();
    let label = format!("Image: {}", s.doc.get(s.active.unwrap()).unwrap().name);
    assert_eq!(s.doc.get(s.active.unwrap()).unwrap().scene, active);
    click_at(&h, &label, egui::Vec2::ZERO, egui::Modifiers::NONE);
    h.run_steps(2);
    let series = h.state().spectra_series();
    assert_eq!(series.len(), 2, "{:?}", series.iter().map(|s| &s.name).collect::<Vec<_>>());
    // pins belong to their scene: the other scene has none, and coming back brings them back
    let pins = h.state().pins.clone();
    click_and_settle(&mut h, "Scene: s4/rgb.png");
    assert!(h.state().pins.is_empty());
    assert_ne!(h.state().doc.active_scene, Some(active));
    click_and_settle(&mut h, "Scene: rgb.png");
    assert_eq!(h.state().pins, pins);
}

#[test]
fn a_right_drag_selects_a_region_whose_mean_and_spread_are_plotted() {
    let mut h = demo();
    click_and_settle(&mut h, "demo 7: ground truth · ground truth");
    let centre = h.get_by_label("Image: demo 7: ground truth").rect().center();
    drag_with(&mut h, egui::PointerButton::Secondary, centre - egui::vec2(30.0, 20.0), centre + egui::vec2(30.0, 20.0));
    settle(&mut h);
    let (r0, c0, r1, c1) = h.state().roi.expect("a right-drag selects a region");
    assert!(r1 > r0 && c1 > c0);
    let series = h.state().spectra_series();
    assert!(series.iter().any(|s| s.name.ends_with("mean")), "{:?}", series.iter().map(|s| &s.name).collect::<Vec<_>>());
    h.get_by_label("Clear region").click();
    h.run_steps(2);
    assert!(h.state().roi.is_none());
}

#[test]
fn a_cube_without_wavelengths_is_labelled_in_bands_and_shown_in_false_colour_without_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (b, r, c) = (5usize, 20usize, 24usize);
    let data: Vec<f32> = (0..r * c * b).map(|i| (i % 97) as f32 / 97.0).collect();
    let path = dir.path().join("five.npy");
    spectral_studio::io::npy::write_f32(&path, &[r, c, b], &data).unwrap();
    let mut h = studio(vec![path], None);
    settle(&mut h);
    assert!(h.state().messages.iter().all(|m| !m.is_error), "{:?}", h.state().messages.iter().map(|m| &m.text).collect::<Vec<_>>());
    h.get_by_label("Image: five.npy");
    h.get_by_label_contains("colour shows three bands as false colour");
    assert!(h.query_by_label_contains("luminance").is_none());
    // band view: the readout counts bands, not nanometres
    click_and_settle(&mut h, "band");
    h.get_by_label("Image: five.npy").hover();
    h.run_steps(2);
    h.get_by_label_contains("band 5");
    assert!(h.query_by_label_contains(" nm ").is_none());
    // an error map without a ground truth falls back to colour and says why
    click_and_settle(&mut h, "RMSE error");
    h.get_by_label_contains("no error map");
    h.get_by_label("Image: five.npy");
}

#[test]
fn a_cube_without_wavelengths_gets_them_from_a_range_a_file_or_a_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = (12usize, 16usize);
    let write = |name: &str, b: usize| {
        let data: Vec<f32> = (0..r * c * b).map(|i| 0.2 + (i % 13) as f32 / 20.0).collect();
        let path = dir.path().join(name);
        spectral_studio::io::npy::write_f32(&path, &[r, c, b], &data).unwrap();
        path
    };
    let (five, ten) = (write("five.npy", 5), write("ten.npy", 10));
    let mut h = studio(vec![five, ten], None);
    settle(&mut h);
    let layer_of = |h: &Harness<'static, Studio>, name: &str| h.state().doc.layers.iter().find(|l| l.name == name).unwrap().id;
    let wavelengths_of = |h: &Harness<'static, Studio>, name: &str| h.state().doc.layers.iter().find(|l| l.name == name).unwrap().data.wavelengths().unwrap().to_vec();
    // five.npy: a range (the window offers 400-700 nm for band numbers)
    click_and_settle(&mut h, "Scene: five.npy");
    h.get_by_label_contains("no wavelengths in the file: bands 1-5");
    click_and_settle(&mut h, "Set wavelengths…");
    h.get_by_label_contains("five.npy: 5 bands");
    h.get_by_label_contains("75.00 nm apart");
    click_and_settle(&mut h, "Apply range");
    assert_eq!(wavelengths_of(&h, "five.npy"), [400.0, 475.0, 550.0, 625.0, 700.0]);
    assert!(h.state().wavelength_editor.is_none(), "the window closes once applied");
    // now visible light: true colour, no false-colour note, the band slider in nm
    assert!(h.query_by_label_contains("colour shows three bands as false colour").is_none());
    h.get_by_label_contains("5 bands, 400-700 nm");
    // a file that does not fit says why and changes nothing; one that fits is applied
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "wavelength\n0.45\n0.50\n").unwrap();
    click_and_settle(&mut h, "Set wavelengths…");
    h.state_mut().wavelength_editor.as_mut().unwrap().file = bad.display().to_string();
    click_and_settle(&mut h, "Apply file");
    h.get_by_label_contains("bad.txt");
    h.get_by_label_contains("the cube has 5 bands");
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "wavelength,fwhm\n0.45,0.01\n0.50,0.01\n0.55,0.01\n0.60,0.01\n0.65,0.01\n").unwrap();
    h.state_mut().wavelength_editor.as_mut().unwrap().file = good.display().to_string();
    click_and_settle(&mut h, "Apply file");
    let w = wavelengths_of(&h, "five.npy");
    assert!(w.iter().zip([450.0, 500.0, 550.0, 600.0, 650.0]).all(|(a, b)| (a - b).abs() < 1e-3), "µm read as µm: {w:?}");
    // ten.npy: ten bands are Sentinel-2's count, offered by name
    click_and_settle(&mut h, "Scene: ten.npy");
    let ten_id = layer_of(&h, "ten.npy");
    assert_eq!(h.state().active.and_then(|a| h.state().doc.get(a)).map(|l| l.id), Some(ten_id));
    click_and_settle(&mut h, "Set wavelengths…");
    h.get_by_label_contains("ten.npy: 10 bands");
    h.get_by_label_contains("Sentinel2 (").click();
    h.run_steps(1);
    settle(&mut h);
    let sentinel = spectral_studio::spectral::library::sensors().iter().find(|s| s.name == "Sentinel2").unwrap();
    assert_eq!(wavelengths_of(&h, "ten.npy"), sentinel.centres);
    assert!(h.state().messages.iter().any(|m| m.text.contains("Sentinel2's band centres")));
    assert!(h.state().messages.iter().all(|m| !m.is_error), "{:?}", h.state().messages.iter().map(|m| &m.text).collect::<Vec<_>>());
}

#[test]
fn a_result_whose_negative_values_were_set_to_zero_says_so_under_its_layer() {
    // mstpp dips a little below zero on this small scene (the CLI reports 11 values)
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_spectral-studio")).args(["scene", "--seed", "3", "--size", "48x40", "-o"]).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let mut h = studio(vec![dir.path().join("rgb.png"), dir.path().join("cube.npy")], None);
    settle(&mut h);
    h.state_mut().recon.chosen = ["mstpp".to_string(), "pca".to_string()].into_iter().collect();
    click_and_settle(&mut h, "Reconstruct");
    let mstpp = by_method(h.state(), "mstpp");
    let warning = mstpp.warning.clone().expect("mstpp's negatives are reported");
    assert!(warning.contains("below zero") && warning.contains("set to 0"), "{warning}");
    assert!(mstpp.data.cube().unwrap().data.iter().all(|&v| v >= 0.0));
    h.get_by_label(&warning);
    assert!(by_method(h.state(), "pca").warning.is_none(), "pca has no negative value");
}

#[test]
fn a_scene_group_folds_away_its_layers_and_unfolds() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = ["a.npy", "b.npy"].iter().map(|n| {
        let path = dir.path().join(n);
        spectral_studio::io::npy::write_f32(&path, &[6, 8, 31], &[0.5f32; 6 * 8 * 31]).unwrap();
        path
    }).collect();
    let mut h = studio(files, None);
    settle(&mut h);
    // a layer's row is labelled with its name and role (a lone cube: "a.npy · input" or "a.npy")
    let layer_rows = |h: &Harness<'static, Studio>, name: &str| ["", " · input", " · ground truth"].iter().map(|role| h.query_all_by_label(&format!("{name}{role}")).count()).sum::<usize>();
    let before = layer_rows(&h, "a.npy");
    assert!(before >= 1);
    // the fold arrow sits left of the scene's name
    let header = h.get_by_label("Scene: a.npy").rect();
    click(&h, egui::pos2(header.left() - 8.0, header.center().y), egui::Modifiers::NONE);
    h.run_steps(8);
    h.get_by_label("Scene: a.npy (1 layer)");
    assert!(layer_rows(&h, "a.npy") < before, "the folded scene's layer rows are gone");
    assert!(layer_rows(&h, "b.npy") >= 1, "the other scene stays open");
    let header = h.get_by_label("Scene: a.npy (1 layer)").rect();
    click(&h, egui::pos2(header.left() - 8.0, header.center().y), egui::Modifiers::NONE);
    h.run_steps(8);
    assert_eq!(layer_rows(&h, "a.npy"), before);
}

#[test]
fn recent_files_keep_what_opened_and_forget_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.npy");
    spectral_studio::io::npy::write_f32(&good, &[4, 5, 3], &[0.5f32; 60]).unwrap();
    let missing = dir.path().join("missing.npy");
    let mut h = studio(vec![good.clone(), missing.clone()], None);
    settle(&mut h);
    let recent = h.state().recent.clone();
    assert!(recent.iter().any(|p| p.ends_with("good.npy")), "{recent:?}");
    assert!(!recent.iter().any(|p| p.ends_with("missing.npy")), "{recent:?}");
    assert!(h.state().messages.iter().any(|m| m.is_error && m.text.contains("missing.npy")));
}

#[test]
fn the_demo_says_it_is_synthetic_and_what_to_try_and_explore_has_fit() {
    let mut h = demo();
    assert!(h.state().messages.iter().any(|m| !m.is_error && m.text.contains("synthetic")), "{:?}", h.state().messages.iter().map(|m| &m.text).collect::<Vec<_>>());
    h.get_by_label("Fit").click();
    h.run_steps(1);
    assert!(h.state().transform.fit_pending || h.state().transform.zoom > 0.0);
}

#[test]
fn a_jpeg_photo_is_decoded_as_srgb_says_so_and_can_be_read_as_linear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.jpg");
    // a flat grey photo: JPEG keeps a flat field exactly
    image::RgbImage::from_pixel(32, 24, image::Rgb([128, 128, 128])).save(&path).unwrap();
    let mut h = studio(vec![path], None);
    settle(&mut h);
    let value = |h: &egui_kittest::Harness<'static, spectral_studio::app::Studio>| {
        let (_, rgb) = h.state().doc.input().expect("the photo is the input");
        rgb.data[[1, 10, 10]]
    };
    let layer = h.state().doc.input().unwrap().0.clone();
    assert!(layer.decoding.as_ref().is_some_and(|d| d.srgb), "{:?}", layer.decoding);
    let srgb = spectral_studio::rgb::srgb_to_linear(128.0 / 255.0);
    assert!((value(&h) - srgb).abs() < 2e-3, "{} vs {srgb}", value(&h));
    h.get_by_label_contains("decoded as sRGB");
    h.get_by_label_contains("a photo from an unknown camera");
    click_and_settle(&mut h, "read as linear");
    assert!((value(&h) - 128.0 / 255.0).abs() < 2e-3, "{}", value(&h));
    assert!(h.state().doc.input().unwrap().0.decoding.as_ref().is_some_and(|d| !d.srgb));
    h.get_by_label_contains("read as linear camera RGB (chosen by you)");
}

#[test]
fn hovering_an_error_map_reads_out_each_methods_error_at_that_pixel() {
    let mut h = demo_with_three_reconstructions();
    click_and_settle(&mut h, "Compare");
    click_and_settle(&mut h, "RMSE map");
    h.get_by_label(&format!("Image: pca · {CANON}")).hover();
    h.run_steps(2);
    let (row, col) = h.state().hovered.expect("a pixel under the pointer");
    let s = h.state();
    let (_, gt) = s.doc.ground_truth().unwrap();
    let pca = s.doc.get(by_method(s, "pca").id).and_then(|l| l.data.cube()).unwrap();
    let want = spectral_studio::metrics::rmse_map(&pca.data, &gt.data).unwrap()[[row, col]];
    h.get_by_label_contains("RMSE: ");
    let readout = h.state().hover_readout().unwrap_or_default();
    let value: f32 = readout
        .split(", ")
        .find_map(|part| part.split(&format!("pca · {CANON} ")).nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pca value in {readout:?}"));
    assert!((value - want).abs() < 1e-4, "readout {value} vs map {want}");
}

#[test]
fn without_a_file_dialog_open_says_so_and_saves_take_a_typed_path() {
    let mut h = demo();
    // Open…: no portal here (the harness says so), and the studio says what to do instead
    h.get_by_label("Open…").click();
    h.run_steps(2);
    assert!(h.state().messages.iter().any(|m| m.is_error && m.text.contains("no file dialog")), "{:?}", h.state().messages.iter().map(|m| &m.text).collect::<Vec<_>>());
    // save the ground truth: a window asks for the path
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("gt.npy");
    h.get_all_by_label("save cube…").next().unwrap().click();
    h.run_steps(2);
    assert!(h.state().pending_save.is_some(), "no path window");
    h.state_mut().pending_save.as_mut().unwrap().path = target.display().to_string();
    h.run_steps(3);
    h.get_by_label_contains("Save as (npy, hdr, mat)");
    click_and_settle(&mut h, "Save");
    assert!(h.state().pending_save.is_none());
    let saved = spectral_studio::io::open(&target, &spectral_studio::io::OpenOptions::default()).unwrap();
    assert_eq!(saved.bands(), 31);
    assert!(h.state().messages.iter().any(|m| m.text.contains("saved") && m.text.contains("gt.npy")));
    // camera curves by typed path: a .csv in the path box joins the Camera tab
    let csv = dir.path().join("cam.csv");
    std::fs::write(&csv, spectral_studio::spectral::camera::CameraResponse::builtin("nikon-5100").unwrap().to_csv()).unwrap();
    h.state_mut().open_path = csv.display().to_string();
    click_and_settle(&mut h, "Open path");
    assert!(h.state().camera.assumable().iter().any(|c| c.name.contains("cam")), "{:?}", h.state().camera.assumable().iter().map(|c| &c.name).collect::<Vec<_>>());
}

#[test]
fn an_envi_cube_s_default_bands_are_its_false_colour() {
    let dir = tempfile::tempdir().unwrap();
    let (b, r, c) = (6usize, 12usize, 10usize);
    let bytes: Vec<u8> = (0..b * r * c).flat_map(|i| ((i % 13) as f32 / 13.0).to_le_bytes()).collect();
    std::fs::write(dir.path().join("six.img"), bytes).unwrap();
    std::fs::write(
        dir.path().join("six.hdr"),
        format!("ENVI\nsamples = {c}\nlines = {r}\nbands = {b}\nheader offset = 0\ndata type = 4\ninterleave = bsq\nbyte order = 0\ndefault bands = {{5, 3, 1}}\nwavelength = {{450, 500, 550, 600, 650, 700}}\n"),
    )
    .unwrap();
    let mut h = studio(vec![dir.path().join("six.hdr")], None);
    settle(&mut h);
    // ENVI numbers bands from 1: {5, 3, 1} are bands 4, 2, 0
    assert_eq!(h.state().display.false_bands, [4, 2, 0]);
}

/// Simulate a fusion pair at ×8 from the demo's ground truth (Fusion tab); the id of its
/// low-resolution cube, a 32² layer of the demo's scene.
fn simulate_x8_pair(h: &mut Harness<'static, Studio>) -> u64 {
    h.get_by_label("Fusion").click();
    h.run_steps(2);
    h.state_mut().fusion.scale = 8;
    click_and_settle(h, "Simulate a pair");
    h.state().fusion.cube.unwrap()
}

#[test]
fn a_low_resolution_cube_in_the_scene_is_read_and_shown_where_the_pin_is() {
    let mut h = demo();
    let lr_id = simulate_x8_pair(&mut h);
    h.get_by_label("Explore").click();
    h.run_steps(2);
    click_and_settle(&mut h, "demo 7: ground truth · ground truth");
    click_at(&h, "Image: demo 7: ground truth", egui::vec2(37.0, -23.0), egui::Modifiers::NONE);
    h.run_steps(2);
    let pin = h.state().pins[0];
    let s = h.state();
    let lr_layer = s.doc.get(lr_id).unwrap();
    let lr = lr_layer.data.cube().unwrap();
    let (r, c) = (pin.row * 32 / 256, pin.col * 32 / 256);
    let series = s.spectra_series();
    let got = series.iter().find(|x| x.name.starts_with(&lr_layer.name)).expect("the ×8 cube is plotted at the pin");
    assert_eq!(got.values, lr.spectrum(r, c), "pin ({}, {}) lies in the ×8 cube's pixel ({r}, {c})", pin.row, pin.col);
    // its view shows the same place, zoomed to its own size, with the pin on it
    let name = lr_layer.name.clone();
    // the layer list's entry (the spectra legend has a box of the same name)
    h.get_all_by_label(&name).next().unwrap().click();
    h.run_steps(1);
    settle(&mut h);
    let view = h.get_by_label(&format!("Image: {name}")).rect();
    h.get_by_label(&format!("Image: {name}")).hover();
    h.run_steps(2);
    assert!(view.width() > 100.0);
    assert_eq!(h.state().pins.len(), 1, "a layer of the same scene keeps the pins");
    // swipe between the ground truth (256²) and the ×8 cube (32²): both cover the scene's
    // frame, and a click on the ×8 side pins the scene's pixel under the pointer
    h.get_by_label("Compare").click();
    h.run_steps(2);
    click_and_settle(&mut h, "swipe");
    let gt_id = h.state().doc.ground_truth().unwrap().0.id;
    h.state_mut().compare.swipe = (Some(gt_id), Some(lr_id));
    h.run_steps(2);
    settle(&mut h);
    assert!(h.query_by_label_contains("swipe needs two images").is_none());
    h.get_by_label_contains("both are drawn over the scene's 256×256 frame");
    let rect = h.get_by_label(&format!("Swipe: demo 7: ground truth | {name}")).rect();
    let t = h.state().transform;
    let dx = 40.0;
    click(&h, rect.center() + egui::vec2(dx, 0.0), egui::Modifiers::NONE);
    h.run_steps(2);
    let pin = h.state().pins[0];
    let (row, col) = (t.centre.y, t.centre.x + dx / t.zoom);
    assert!((pin.row as f32 - row).abs() <= 1.0 && (pin.col as f32 - col).abs() <= 1.0, "pinned {pin:?}, the scene's pixel under the pointer is ({row}, {col})");
    assert!(t.zoom > 1.0, "the 256² frame fills the view, not the 32² cube's size: zoom {}", t.zoom);
}

#[test]
fn a_result_that_cannot_be_scored_says_why() {
    let mut h = demo_with_three_reconstructions();
    // the ×8 cube as ground truth: the 256 × 256 reconstructions cannot be scored against it
    let lr = simulate_x8_pair(&mut h);
    h.state_mut().doc.set_ground_truth(lr);
    click_and_settle(&mut h, "Compare");
    assert!(h.query_all_by_label_contains("not scored: 256×256×31 against a 32×32×31 ground truth").count() >= 3);
}

#[test]
fn the_device_is_chosen_in_the_reconstruct_training_and_fusion_panels_and_what_this_build_lacks_is_greyed() {
    use egui::accesskit::Role;
    let mut h = demo();
    assert_eq!(h.state().recon.device, "cpu");
    // the list: cpu usable; cuda and metal listed, greyed in a build without them
    h.get_by(|n| n.role() == Role::ComboBox && n.value().as_deref() == Some("cpu")).click();
    h.run_steps(3);
    for name in ["cuda", "metal"] {
        let item = h.get_by_label(name);
        let built = (name == "cuda" && cfg!(feature = "cuda")) || (name == "metal" && cfg!(feature = "metal"));
        if !built {
            use egui_kittest::kittest::NodeT;
            assert!(item.accesskit_node().is_disabled(), "{name} is offered by a build without it");
        }
    }
    if !cfg!(feature = "cuda") {
        h.get_by_label_contains("cuda, metal unavailable");
    }
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    // a reconstruction request carries the device
    click_and_settle(&mut h, "Reconstruct");
    assert!(h.state().messages.iter().all(|m| !m.is_error), "{:?}", h.state().messages);
    assert!(h.state().doc.reconstructions().count() > 0);
    // the Training panel has its own choice, on the run's settings
    click_and_settle(&mut h, "Training");
    assert_eq!(h.state().training.settings.device, "cpu");
    // the side panel's Reconstruct choice and the Training panel's, both shown
    assert_eq!(h.query_all_by(|n| n.role() == Role::ComboBox && n.value().as_deref() == Some("cpu")).count(), 2);
    // and the Fusion panel's, where the fusion module and the adaptation run
    click_and_settle(&mut h, "Fusion");
    assert_eq!(h.state().fusion.device, "cpu");
    assert_eq!(h.query_all_by(|n| n.role() == Role::ComboBox && n.value().as_deref() == Some("cpu")).count(), 2);
}
