//! Environment self-check: proves that the native libraries silt links (libtorch, faiss) load and
//! compute, and says which device paths are available.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub silt_version: &'static str,
    pub shard_format: String,
    pub torch_cuda_available: bool,
    pub torch_cuda_devices: usize,
    pub torch_cudnn_available: bool,
    /// A small matmul on the CPU through libtorch, compared with the exact value.
    pub torch_cpu_check: bool,
    /// A small k-means through faiss on two well-separated blobs.
    pub faiss_kmeans_check: bool,
}

pub fn run_checks() -> Report {
    Report {
        silt_version: env!("CARGO_PKG_VERSION"),
        shard_format: format!("{}.{}", silt_shards::format::VERSION_MAJOR, silt_shards::format::VERSION_MINOR),
        torch_cuda_available: tch::Cuda::is_available(),
        torch_cuda_devices: tch::Cuda::device_count().max(0) as usize,
        torch_cudnn_available: tch::Cuda::cudnn_is_available(),
        torch_cpu_check: torch_cpu_check(),
        faiss_kmeans_check: faiss_kmeans_check(),
    }
}

fn torch_cpu_check() -> bool {
    let a = tch::Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([2, 2]);
    let p = a.matmul(&a); // [[7, 10], [15, 22]]
    let v: Vec<f32> = p.reshape([-1]).try_into().unwrap_or_default();
    v == [7., 10., 15., 22.]
}

fn faiss_kmeans_check() -> bool {
    // Two blobs at x = 0 and x = 10 in 4-D; k-means with k = 2 must find centroids near both.
    let (d, n) = (4usize, 200usize);
    let mut x = Vec::with_capacity(n * d);
    for i in 0..n {
        let centre = if i % 2 == 0 { 0.0 } else { 10.0 };
        for j in 0..d {
            x.push(centre + ((i * 31 + j * 17) % 13) as f32 * 0.01);
        }
    }
    let Ok(result) = faiss::cluster::kmeans_clustering(d as u32, 2, &x) else { return false };
    let mut c: Vec<f32> = result.centroids.chunks(d).map(|c| c[0]).collect();
    c.sort_by(f32::total_cmp);
    c.len() == 2 && c[0].abs() < 0.5 && (c[1] - 10.0).abs() < 0.5
}
