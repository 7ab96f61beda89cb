//! The data loader: sampler -> decode -> augment (multi-crop) -> batch, on a pool of threads.
//!
//! - [`sampler`]: which indices each rank reads per epoch; deterministic from (seed, epoch),
//!   resumable, elastic.
//! - [`decode`]: records to RGB (libjpeg-turbo with DCT scaling and cropped decode; `image`).
//! - [`augment`]: torchvision-semantics ops; [`multicrop`]: views and the per-sample pipeline;
//!   [`presets`]: the methods' recipes.
//! - [`batch`]: contiguous NCHW batches and tch tensors; [`workers`]: the thread pool.
//! - [`gpu`]: nvJPEG decode and batched tensor augmentation, batches made on the device.

pub mod augment;
pub mod batch;
pub mod decode;
pub mod gpu;
pub mod multicrop;
pub mod presets;
pub mod rng;
pub mod sampler;
pub mod simd;
pub mod workers;

pub use batch::{Batch, ViewBatch};
pub use decode::{CpuDecoder, Decode, DecodeError, DecodeRequest, Decoded, RgbImage};
pub use multicrop::{Augmenter, Geometry, Pipeline, ViewSpec};
pub use presets::preset;
pub use sampler::{CacheMode, Sampler, SamplerError, SamplerKind, SamplerState};
pub use workers::{cpu_decoder_factory, run_epoch, LoaderConfig, LoaderStats};
