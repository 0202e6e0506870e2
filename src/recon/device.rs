//! Device choice: `cpu` always; `cuda` and `metal` when the binary was built with the cargo
//! feature of that name (forwarded to candle).

use crate::{Error, Result};
use candle_core::Device;

pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                return Err(Error::invalid("device 'cuda': this binary was built without CUDA (rebuild with `--features cuda` under the environment `scripts/cuda-env.sh` prints; see the README's GPU section)"));
            }
            Device::new_cuda(0).map_err(|e| Error::invalid(format!("device 'cuda': no usable NVIDIA GPU or driver ({e})")))
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(Error::invalid("device 'metal': this binary was built without Metal (rebuild with `--features metal` on macOS)"));
            }
            Device::new_metal(0).map_err(|e| Error::invalid(format!("device 'metal': no usable Metal device ({e})")))
        }
        other => Err(Error::invalid(format!("unknown device '{other}' (expected cpu, cuda or metal)"))),
    }
}

pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

/// A device this program knows, and whether this build on this machine can run on it.
#[derive(Debug, Clone)]
pub struct DeviceOption {
    pub name: &'static str,
    /// Why it cannot be used here (the missing feature, or the driver's answer); None when it can.
    pub unavailable: Option<String>,
}

/// cpu, cuda and metal, each with whether it can be used: the cargo feature it needs, then the
/// device itself (probed once per process; creating a CUDA context takes a moment).
pub fn offered() -> &'static [DeviceOption] {
    static OFFERED: std::sync::OnceLock<Vec<DeviceOption>> = std::sync::OnceLock::new();
    OFFERED.get_or_init(|| {
        ["cpu", "cuda", "metal"]
            .into_iter()
            .map(|name| DeviceOption { name, unavailable: parse_device(name).err().map(|e| e.to_string()) })
            .collect()
    })
}

/// One line for `--help`, `methods` and the studio: "cpu (cuda: built without CUDA …)".
pub fn offered_summary() -> String {
    let usable: Vec<&str> = offered().iter().filter(|d| d.unavailable.is_none()).map(|d| d.name).collect();
    format!("this build runs on: {}", usable.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_always_offered_and_missing_features_say_which() {
        let offered = offered();
        assert_eq!(offered.iter().map(|d| d.name).collect::<Vec<_>>(), ["cpu", "cuda", "metal"]);
        assert!(offered[0].unavailable.is_none());
        if !cfg!(feature = "cuda") {
            assert!(offered[1].unavailable.as_deref().unwrap().contains("--features cuda"), "{:?}", offered[1]);
        }
        if !cfg!(feature = "metal") {
            assert!(offered[2].unavailable.as_deref().unwrap().contains("--features metal"), "{:?}", offered[2]);
        }
        assert!(offered_summary().starts_with("this build runs on: cpu"));
    }
}
