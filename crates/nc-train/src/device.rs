//! Device selection. Model and training code never name a backend: the device picks it.
//!
//! - default build: `cpu` = burn's pure-Rust `flex` backend;
//! - feature `tch`: `cpu` = libtorch on the CPU, `cuda:N` = libtorch on GPU N;
//! - feature `cuda`: `cuda:N` = burn's native CUDA backend.
use burn::prelude::*;

use crate::error::{Result, TrainError};

/// A parsed `--device`.
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
            _ => Err(TrainError::Config(format!(
                "unknown device {s:?}: use cpu or cuda:N"
            ))),
        },
    }
}

/// The burn device (without autodiff) for a choice, or an error if this build cannot run it.
pub fn device_for(choice: DeviceChoice) -> Result<Device> {
    match choice {
        #[cfg(feature = "tch")]
        DeviceChoice::Cpu => Ok(Device::libtorch()),
        #[cfg(not(feature = "tch"))]
        DeviceChoice::Cpu => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        DeviceChoice::Cuda(i) => Ok(Device::libtorch_cuda(i)),
        #[cfg(all(feature = "cuda", not(feature = "tch")))]
        DeviceChoice::Cuda(i) => Ok(Device::cuda(i)),
        #[cfg(not(any(feature = "tch", feature = "cuda")))]
        DeviceChoice::Cuda(_) => Err(TrainError::Config(
            "this nclab was built without GPU support: rebuild with --features tch or --features cuda (see docs/train.md)".into(),
        )),
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
