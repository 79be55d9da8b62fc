//! Device selection. Model and training code never name a backend: the device picks it.
//!
//! - default build: `cpu` = burn's pure-Rust `flex` backend;
//! - feature `tch`: `cpu` = libtorch on the CPU, `cuda:N` = libtorch on GPU N;
//! - feature `cuda`: `cuda:N` = burn's native CUDA backend.
use burn::prelude::*;

use crate::error::{Result, TrainError};

/// A parsed device setting (`device` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

/// Parses `cpu` or `cuda:N` (`cuda` = `cuda:0`).
pub fn parse_device(s: &str) -> Result<DeviceChoice> {
    match s {
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Ok(DeviceChoice::Cuda(i)),
            _ => Err(TrainError::setting(
                "device",
                format!("names an unknown device {s:?}: use cpu or cuda:N"),
            )),
        },
    }
}

/// The burn device (without autodiff) for a choice, or an error if this build cannot run it.
// burn 0.22 marks its libtorch backend deprecated in favour of CubeCL; it is still the one
// that reaches PyTorch's CPU and CUDA kernels (see docs/train.md), so the `tch` build keeps it.
#[allow(deprecated)]
pub fn device_for(choice: DeviceChoice) -> Result<Device> {
    match choice {
        #[cfg(feature = "tch")]
        DeviceChoice::Cpu => Ok(Device::libtorch()),
        #[cfg(not(feature = "tch"))]
        DeviceChoice::Cpu => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        DeviceChoice::Cuda(i) => probe(Device::libtorch_cuda(i), &format!("cuda:{i} (libtorch)")),
        #[cfg(all(feature = "cuda", not(feature = "tch")))]
        DeviceChoice::Cuda(i) => probe(Device::cuda(i), &format!("cuda:{i}")),
        #[cfg(not(any(feature = "tch", feature = "cuda")))]
        DeviceChoice::Cuda(i) => Err(TrainError::setting(
            "device",
            format!("cuda:{i} needs a GPU build: this one was built without GPU support (rebuild with cargo's --features tch or --features cuda, see docs/train.md)"),
        )),
    }
}

/// Makes one small tensor on a GPU `device`: the backends panic when the GPU, its driver or a
/// CUDA build of libtorch is missing, and that becomes an error naming the device.
#[cfg(any(feature = "tch", feature = "cuda"))]
fn probe(device: Device, what: &str) -> Result<Device> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Tensor::<1>::zeros([1], &device).into_data()
    }));
    std::panic::set_hook(hook);
    match made {
        Ok(_) => Ok(device),
        Err(payload) => {
            let reason = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend failed to start".into());
            // libtorch's messages carry a C++ backtrace, escaped or not: keep the first line.
            let reason = reason
                .split(['\n', '\r'])
                .next()
                .and_then(|line| line.split("\\n").next())
                .unwrap_or_default()
                .to_string();
            Err(TrainError::setting(
                "device",
                format!("{what} is not usable: {reason}"),
            ))
        }
    }
}

/// Human-readable backend name of this build for a choice.
pub fn backend_name(choice: DeviceChoice) -> &'static str {
    match choice {
        DeviceChoice::Cpu if cfg!(feature = "tch") => "libtorch (cpu)",
        DeviceChoice::Cpu => "flex (cpu)",
        DeviceChoice::Cuda(_) if cfg!(feature = "tch") => "libtorch (cuda)",
        DeviceChoice::Cuda(_) => "burn cuda",
    }
}
