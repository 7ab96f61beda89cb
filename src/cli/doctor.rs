use clap::Args;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl DoctorArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let r = crate::doctor::run_checks();
        if self.json {
            writeln!(out, "{}", serde_json::to_string(&r)?)?;
        } else {
            writeln!(out, "silt {}  (shard format {})", r.silt_version, r.shard_format)?;
            writeln!(out, "libtorch CPU matmul ........ {}", if r.torch_cpu_check { "ok" } else { "FAILED" })?;
            writeln!(out, "CUDA ....................... {} ({} devices, cuDNN {})",
                if r.torch_cuda_available { "available" } else { "not available (CPU paths will be used)" },
                r.torch_cuda_devices, r.torch_cudnn_available)?;
            writeln!(out, "faiss k-means .............. {}", if r.faiss_kmeans_check { "ok" } else { "FAILED" })?;
        }
        let ok = r.torch_cpu_check && r.faiss_kmeans_check;
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}
