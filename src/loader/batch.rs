//! Batches: one contiguous uint8 NCHW buffer per view, plus labels, record ids and rotation
//! labels; turned into tch tensors on demand (uint8, or normalised float32), pinned when CUDA is
//! present so the host-to-device copy can run asynchronously.

use super::multicrop::Pipeline;
use tch::{Device, Kind, Tensor};

/// All samples' images for one view slot: `n` images of 3 x `size` x `size`, NCHW.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewBatch {
    pub size: u32,
    pub n: usize,
    pub data: Vec<u8>,
    /// Rotation label of each image (empty unless the view emits rotations).
    pub rotation_labels: Vec<i64>,
    /// The images as a uint8 [n, 3, size, size] tensor already on the device (GPU loader);
    /// `data` is then empty.
    pub device: Option<DeviceTensor>,
}

/// A tensor held by a batch: clones share the storage, equality compares the values.
#[derive(Debug)]
pub struct DeviceTensor(pub Tensor);

impl Clone for DeviceTensor {
    fn clone(&self) -> Self {
        DeviceTensor(self.0.shallow_clone())
    }
}

impl PartialEq for DeviceTensor {
    fn eq(&self, other: &Self) -> bool {
        self.0.size() == other.0.size() && self.0.equal(&other.0.to_device(self.0.device()))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Position of this batch in the epoch's stream.
    pub number: usize,
    /// Global dataset index of each sample.
    pub indices: Vec<u64>,
    /// Record id of each sample.
    pub ids: Vec<u64>,
    /// Label of each sample (-1 where the record has none).
    pub labels: Vec<i64>,
    /// One entry per view slot of the pipeline (SwAV: 2 x 224 then 6 x 96).
    pub views: Vec<ViewBatch>,
    /// Samples of this batch that failed to decode and were left out.
    pub skipped: usize,
}

impl Batch {
    pub fn empty(pipeline: &Pipeline, number: usize, capacity: usize) -> Self {
        let views = pipeline
            .view_slots()
            .into_iter()
            .map(|(k, _)| {
                let v = &pipeline.views[k];
                let per = v.images_per_view();
                ViewBatch { size: v.size, n: 0, data: Vec::with_capacity(capacity * per * 3 * (v.size as usize).pow(2)), rotation_labels: Vec::new(), device: None }
            })
            .collect();
        Batch { number, views, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// View `v` as a uint8 tensor [n, 3, size, size] (pinned when CUDA is available; the
    /// device tensor itself when the GPU loader made the batch).
    pub fn view_u8(&self, v: usize) -> Tensor {
        let vb = &self.views[v];
        if let Some(t) = &vb.device {
            return t.0.shallow_clone();
        }
        let s = vb.size as i64;
        pin(Tensor::from_slice(&vb.data).view([vb.n as i64, 3, s, s]))
    }

    /// View `v` as float32 `(x / 255 - mean) / std`, on `device`.
    pub fn view_f32(&self, v: usize, mean: [f32; 3], std: [f32; 3], device: Device) -> Tensor {
        let x = self.view_u8(v).to_device(device).to_kind(Kind::Float) / 255.0;
        let m = Tensor::from_slice(&mean).view([1, 3, 1, 1]).to_device(device);
        let s = Tensor::from_slice(&std).view([1, 3, 1, 1]).to_device(device);
        (x - m) / s
    }

    pub fn labels_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.labels)
    }
    pub fn ids_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.ids.iter().map(|&i| i as i64).collect::<Vec<_>>())
    }
    pub fn rotation_labels_tensor(&self, v: usize) -> Tensor {
        Tensor::from_slice(&self.views[v].rotation_labels)
    }
}

/// Pinned host memory when a CUDA device exists (page-locked memory needs the CUDA driver).
fn pin(t: Tensor) -> Tensor {
    if tch::Cuda::is_available() {
        t.pin_memory(Device::Cuda(0))
    } else {
        t
    }
}
