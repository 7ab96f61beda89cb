//! The GPU path of the loader: nvJPEG decode ([`nvjpeg`], loaded at run time) and the
//! augmentations as batched tensor ops ([`augment`]), put together by [`batcher`] into
//! [`crate::loader::Batch`]es whose views already sit on the device. Everything here also runs
//! on the CPU (tensor ops on `Device::Cpu`, libjpeg-turbo decode), which is how the tests check
//! it against the per-sample CPU loader on machines without a GPU.

pub mod augment;
pub mod batcher;
pub mod nvjpeg;

pub use augment::Resample;
pub use batcher::{run_device_epoch, DecodeMode, DeviceEpochIter, DeviceLoader, DeviceLoaderStats};
pub use nvjpeg::{NvJpeg, NvJpegError, NvJpegLibrary};
