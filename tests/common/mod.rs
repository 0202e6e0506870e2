//! Driving the studio in egui_kittest as a user would: a harness over the whole window, clicks
//! and drags as pointer events, and waiting for the jobs a click starts. Shared by the studio's
//! flow tests (tests/studio.rs) and its picture tests (tests/snapshots.rs); each uses a part.
#![allow(dead_code)]

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use spectral_studio::app::{Studio, StudioOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The window size of the flow tests (the README's screenshots are this size too).
pub const WINDOW: [f32; 2] = [1400.0, 900.0];

pub fn studio(files: Vec<PathBuf>, models_dir: Option<PathBuf>) -> Harness<'static, Studio> {
    studio_sized(files, models_dir, WINDOW)
}

pub fn studio_sized(files: Vec<PathBuf>, models_dir: Option<PathBuf>, size: [f32; 2]) -> Harness<'static, Studio> {
    with_options(StudioOptions { files, models_dir, recent_file: None, memory_cap: None, file_dialogs: Some(false) }, size)
}

pub fn with_options(options: StudioOptions, size: [f32; 2]) -> Harness<'static, Studio> {
    Harness::builder().with_size(size).build_ui_state(|ui, s: &mut Studio| s.ui(ui), Studio::new(options))
}

/// Step frames until no job is running (jobs run on their own threads), then a few more so
/// the results are drawn.
pub fn settle(h: &mut Harness<'static, Studio>) {
    let start = Instant::now();
    loop {
        h.step();
        if !h.state().busy() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "jobs still running: {:?}", h.state().job_names());
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(3);
}

/// Click the widget labelled `label` (scrolled into view first, as a user would), then wait
/// for the jobs it starts.
pub fn click_and_settle(h: &mut Harness<'static, Studio>, label: &str) {
    h.get_by_label(label).scroll_to_me();
    // the scroll is animated over a few frames
    h.run_steps(10);
    h.get_by_label(label).click();
    h.run_steps(1);
    settle(h);
}

pub fn demo() -> Harness<'static, Studio> {
    demo_sized(WINDOW)
}

/// The studio on its demo, in a window of `size`, once loading has settled.
pub fn demo_sized(size: [f32; 2]) -> Harness<'static, Studio> {
    let mut h = studio_sized(Vec::new(), None, size);
    settle(&mut h);
    h
}

/// The demo after running spline, pca and basisnet from the Reconstruct panel (pca and
/// basisnet are ticked by default).
pub fn demo_with_three_reconstructions() -> Harness<'static, Studio> {
    let mut h = demo();
    h.get_by_label("spline (classical)").click();
    h.run_steps(1);
    click_and_settle(&mut h, "Reconstruct");
    h
}

/// A click at `offset` from the centre of the widget labelled `label`.
pub fn click_at(h: &Harness<'static, Studio>, label: &str, offset: egui::Vec2, modifiers: egui::Modifiers) {
    click(h, h.get_by_label(label).rect().center() + offset, modifiers);
}

pub fn click(h: &Harness<'static, Studio>, pos: egui::Pos2, modifiers: egui::Modifiers) {
    h.event(egui::Event::PointerMoved(pos));
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton { pos, button: egui::PointerButton::Primary, pressed, modifiers });
    }
}

/// Press at `from`, move to `to` in steps, release: a drag as a mouse makes it.
pub fn drag(h: &mut Harness<'static, Studio>, from: egui::Pos2, to: egui::Pos2) {
    drag_with(h, egui::PointerButton::Primary, from, to);
}

/// [`drag`] with any button (the secondary one selects a region).
pub fn drag_with(h: &mut Harness<'static, Studio>, button: egui::PointerButton, from: egui::Pos2, to: egui::Pos2) {
    h.event(egui::Event::PointerMoved(from));
    h.event(egui::Event::PointerButton { pos: from, button, pressed: true, modifiers: egui::Modifiers::NONE });
    h.run_steps(1);
    for k in 1..=4 {
        h.event(egui::Event::PointerMoved(from + (to - from) * (k as f32 / 4.0)));
        h.run_steps(1);
    }
    h.event(egui::Event::PointerButton { pos: to, button, pressed: false, modifiers: egui::Modifiers::NONE });
    h.run_steps(2);
}

