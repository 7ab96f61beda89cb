//! Mixed precision for the training step (`--precision bf16`): torch's autocast around the
//! forward pass and the loss, the way `torch.autocast(device_type, torch.bfloat16)` is used in
//! PyTorch training loops. Parameters, gradients, optimiser state and checkpoints stay float32;
//! matmuls and convolutions run in bfloat16 (tensor cores on GPUs, AMX/AVX-512-BF16 on CPUs
//! that have them), reductions and losses in float32 (autocast's own op lists). bfloat16 keeps
//! float32's exponent range, so no loss scaling is needed. Switched through csrc/amp_shim.cpp.

use serde::{Deserialize, Serialize};
use std::os::raw::c_int;
use tch::Device;

extern "C" {
    fn silt_autocast_enter(device: c_int, dtype: c_int) -> c_int;
    fn silt_autocast_exit(device: c_int, prev: c_int);
    fn silt_autocast_is_enabled(device: c_int) -> c_int;
}

/// The precision of the training step's forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

fn device_code(device: Device) -> c_int {
    match device {
        Device::Cuda(_) => 1,
        _ => 0,
    }
}

/// While alive, autocast is on for one device type; dropping it restores the previous state.
pub struct AutocastGuard {
    device: c_int,
    prev: c_int,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: plain integers; pairs with the silt_autocast_enter that made this guard.
        unsafe { silt_autocast_exit(self.device, self.prev) }
    }
}

impl Precision {
    /// Enters autocast on `device` for bf16 (None for fp32, or if libtorch refused).
    pub fn enter(self, device: Device) -> Option<AutocastGuard> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => {
                let d = device_code(device);
                // SAFETY: plain integers; libtorch errors come back as -1.
                let prev = unsafe { silt_autocast_enter(d, 0) };
                (prev >= 0).then_some(AutocastGuard { device: d, prev })
            }
        }
    }
}

/// Whether autocast is on for `device`'s type on this thread.
pub fn autocast_enabled(device: Device) -> bool {
    // SAFETY: plain integer in, plain integer out.
    unsafe { silt_autocast_is_enabled(device_code(device)) != 0 }
}
