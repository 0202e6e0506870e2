//! Spectra and region statistics of large cubes. They are read from the file by jobs (a
//! pixel's spectrum is one strided read; a region's statistics one streamed pass) and kept
//! here, so the spectra plot, drawn every frame, never touches a file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::document::{Document, LargeCube, LayerData};
use super::view::Pin;
use crate::engine::JobContext;
use crate::io::source;
use crate::{Rect, Result};

/// A region as the studio keeps it: (row0, col0, row1, col1), inclusive.
pub type Roi = (usize, usize, usize, usize);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKey {
    /// The spectrum of layer `.0` at (row, col).
    Spectrum(u64, usize, usize),
    /// Per-band mean and standard deviation of layer `.0` over a region.
    Region(u64, Roi),
}

#[derive(Clone, Debug)]
pub enum ProbeValue {
    Spectrum(Vec<f32>),
    /// Mean and standard deviation per band.
    Region(Vec<f32>, Vec<f32>),
}

#[derive(Default)]
pub struct Probes {
    values: HashMap<ProbeKey, ProbeValue>,
    pending: HashSet<ProbeKey>,
    failed: HashSet<ProbeKey>,
}

impl Probes {
    /// What the pins and the region ask of large layers that is neither known nor being read;
    /// each is marked as being read (the caller starts a job per item with [`read`]).
    pub fn missing(&mut self, doc: &Document, pins: &[Pin], roi: Option<Roi>) -> Vec<(ProbeKey, Arc<LargeCube>)> {
        let mut out = Vec::new();
        for layer in doc.active_layers() {
            let LayerData::Large(large) = &layer.data else { continue };
            let (rows, cols) = layer.data.rows_cols();
            // pins and regions are in the scene's frame: read the layer's own pixels
            let pins: Vec<(usize, usize)> = pins.iter().map(|p| doc.to_layer(layer, (p.row, p.col))).collect();
            let roi = roi.map(|(r0, c0, r1, c1)| {
                let ((a, b), (c, d)) = (doc.to_layer(layer, (r0, c0)), doc.to_layer(layer, (r1, c1)));
                (a, b, c, d)
            });
            let keys = pins
                .iter()
                .filter(|p| p.0 < rows && p.1 < cols)
                .map(|p| ProbeKey::Spectrum(layer.id, p.0, p.1))
                .chain(roi.filter(|r| r.2 < rows && r.3 < cols).map(|r| ProbeKey::Region(layer.id, r)));
            for key in keys {
                if !self.values.contains_key(&key) && !self.pending.contains(&key) && !self.failed.contains(&key) {
                    self.pending.insert(key.clone());
                    out.push((key, large.clone()));
                }
            }
        }
        out
    }

    pub fn insert(&mut self, key: ProbeKey, value: ProbeValue) {
        self.pending.remove(&key);
        self.values.insert(key, value);
    }

    /// A read that failed is not retried (its error was reported once).
    pub fn fail(&mut self, key: ProbeKey) {
        self.pending.remove(&key);
        self.failed.insert(key);
    }

    pub fn is_reading(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn spectrum(&self, layer: u64, row: usize, col: usize) -> Option<&[f32]> {
        match self.values.get(&ProbeKey::Spectrum(layer, row, col)) {
            Some(ProbeValue::Spectrum(v)) => Some(v),
            _ => None,
        }
    }

    pub fn region(&self, layer: u64, roi: Roi) -> Option<(&[f32], &[f32])> {
        match self.values.get(&ProbeKey::Region(layer, roi)) {
            Some(ProbeValue::Region(m, s)) => Some((m, s)),
            _ => None,
        }
    }

    /// Forget everything about a closed layer.
    pub fn forget(&mut self, layer: u64) {
        let of = |k: &ProbeKey| match k {
            ProbeKey::Spectrum(id, ..) | ProbeKey::Region(id, _) => *id == layer,
        };
        self.values.retain(|k, _| !of(k));
        self.failed.retain(|k| !of(k));
    }
}

/// Read what `key` asks of `large` from its file.
pub fn read(large: &LargeCube, key: &ProbeKey, job: &JobContext) -> Result<ProbeValue> {
    match *key {
        ProbeKey::Spectrum(_, row, col) => Ok(ProbeValue::Spectrum(source::spectrum(&*large.source, row, col)?)),
        ProbeKey::Region(_, (r0, c0, r1, c1)) => {
            let rect = Rect { row: r0, col: c0, height: r1 + 1 - r0, width: c1 + 1 - c0 };
            let stats = source::band_stats(&*large.source, Some(rect), job)?;
            Ok(ProbeValue::Region(stats.bands.iter().map(|s| s.mean as f32).collect(), stats.bands.iter().map(|s| s.std as f32).collect()))
        }
    }
}
