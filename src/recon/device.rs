//! Device choice: `cpu` always; `cuda` and `metal` when the binary was built with the cargo
//! feature of that name (forwarded to candle).

use crate::{Error, Result};
use candle_core::Device;

pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                return Err(Error::invalid("device 'cuda': this binary was built without CUDA (rebuild with `--features cuda`; needs nvcc)"));
            }
            Device::new_cuda(0).map_err(|e| Error::invalid(format!("device 'cuda': {e}")))
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(Error::invalid("device 'metal': this binary was built without Metal (rebuild with `--features metal` on macOS)"));
            }
            Device::new_metal(0).map_err(|e| Error::invalid(format!("device 'metal': {e}")))
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
