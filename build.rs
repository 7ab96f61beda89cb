//! Compiles the C++ shims (csrc/c10d_shim.cpp: torch's c10d, see src/dist/mod.rs;
//! csrc/amp_shim.cpp: autocast, see src/train/precision.rs; csrc/grad_shim.cpp: dropping
//! gradients, see src/train/optim.rs) against the headers of the libtorch that torch-sys found,
//! and links them.

use std::env;
use std::path::PathBuf;

fn main() {
    // torch-sys (links = "tch") exports the libtorch library directory it linked against.
    let lib_dir = PathBuf::from(env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not export libtorch_lib (DEP_TCH_LIBTORCH_LIB)"));
    let include = lib_dir.parent().map(|root| root.join("include")).expect("libtorch lib directory has no parent");
    // The PyPI wheels are built with the C++11 ABI (torch.compiled_with_cxx11_abi() == True).
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // gloo's headers are not in the wheel; a declaration-only stub is enough (REPORT.md)
        .include("csrc/gloo-stub");
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // NCCL through the wheel's ProcessGroupNCCL; headers from the nvidia-* wheels (ops/setup
        // installs nvidia-cuda-crt and nvidia-cuda-cccl for this feature).
        let nvidia = lib_dir.join("../../nvidia");
        build.define("SILT_C10D_NCCL", None).define("USE_C10D_NCCL", None).define("USE_CUDA", None).include(nvidia.join("cu13/include")).include(nvidia.join("nccl/include"));
        // rustc links with --as-needed, which would drop libtorch_cuda
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,--as-needed");
    }
    build.file("csrc/c10d_shim.cpp").file("csrc/amp_shim.cpp").file("csrc/grad_shim.cpp").compile("silt_c10d");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_CUDA");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}
