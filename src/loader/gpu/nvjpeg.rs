//! nvJPEG, loaded at run time (dlopen) so that silt builds, links and tests on machines
//! without CUDA: batched decode of JPEG bytes (straight from the memory-mapped shards) into one
//! device tensor, with the hardware decoder (A100/H100) when nvJPEG offers it, else the
//! hybrid GPU backend.
//!
//! The library is looked for, in order: `$SILT_NVJPEG` (a file), the default search path
//! (`libnvjpeg.so.13`, `.so.12`, `.so`), then next to the torch wheel: the `nvidia-nvjpeg`
//! wheel (`site-packages/nvidia/cu13/lib`, `nvidia/nvjpeg/lib`) and torchvision's bundled copy
//! (`site-packages/torchvision.libs`).

use libloading::Library;
use std::ffi::c_void;
use std::os::raw::{c_int, c_uchar, c_uint};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum NvJpegError {
    #[error("no CUDA device (libtorch sees none)")]
    NoCuda,
    #[error("nvJPEG library not found (tried {tried}); install the nvidia-nvjpeg wheel or set SILT_NVJPEG")]
    NotFound { tried: String },
    #[error("nvJPEG library {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("nvJPEG {call} failed: {status}")]
    Status { call: &'static str, status: Status },
}

/// An `nvjpegStatus_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub c_int);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "NOT_INITIALIZED",
            2 => "INVALID_PARAMETER",
            3 => "BAD_JPEG",
            4 => "JPEG_NOT_SUPPORTED",
            5 => "ALLOCATOR_FAILURE",
            6 => "EXECUTION_FAILED",
            7 => "ARCH_MISMATCH",
            8 => "INTERNAL_ERROR",
            9 => "IMPLEMENTATION_NOT_SUPPORTED",
            10 => "INCOMPLETE_BITSTREAM",
            _ => "UNKNOWN",
        };
        write!(f, "NVJPEG_STATUS_{name} ({})", self.0)
    }
}

// nvjpeg.h constants.
const BACKEND_DEFAULT: c_int = 0;
const BACKEND_HARDWARE: c_int = 3;
const OUTPUT_RGB: c_int = 3;
const MAX_COMPONENT: usize = 4;
/// Chroma subsamplings the batched decoders take (444, 422, 420, 440, gray); 411/410 go to
/// the CPU.
const GPU_SUBSAMPLINGS: [c_int; 5] = [0, 1, 2, 3, 6];

type Handle = *mut c_void;
type State = *mut c_void;
type CudaStream = *mut c_void;

/// `nvjpegImage_t`: one pointer and pitch per output plane.
#[repr(C)]
struct NvImage {
    channel: [*mut c_uchar; MAX_COMPONENT],
    pitch: [usize; MAX_COMPONENT],
}

type CreateEx = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void, c_uint, *mut Handle) -> c_int;
type Destroy = unsafe extern "C" fn(Handle) -> c_int;
type StateCreate = unsafe extern "C" fn(Handle, *mut State) -> c_int;
type StateDestroy = unsafe extern "C" fn(State) -> c_int;
type GetImageInfo = unsafe extern "C" fn(Handle, *const c_uchar, usize, *mut c_int, *mut c_int, *mut c_int, *mut c_int) -> c_int;
type Decode = unsafe extern "C" fn(Handle, State, *const c_uchar, usize, c_int, *mut NvImage, CudaStream) -> c_int;
type BatchedInit = unsafe extern "C" fn(Handle, State, c_int, c_int, c_int) -> c_int;
type DecodeBatched = unsafe extern "C" fn(Handle, State, *const *const c_uchar, *const usize, *mut NvImage, CudaStream) -> c_int;

/// The entry points silt uses, resolved from the library.
struct Api {
    create_ex: CreateEx,
    destroy: Destroy,
    state_create: StateCreate,
    state_destroy: StateDestroy,
    get_image_info: GetImageInfo,
    decode: Decode,
    batched_init: BatchedInit,
    decode_batched: DecodeBatched,
    // Keeps the function pointers valid; dropped last.
    _lib: Library,
}

/// The loaded library, before any CUDA call: proves the decoder could run on a GPU machine.
pub struct NvJpegLibrary {
    api: Api,
    pub path: PathBuf,
}

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("SILT_NVJPEG") {
        out.push(PathBuf::from(p));
    }
    for name in ["libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so"] {
        out.push(PathBuf::from(name));
    }
    // site-packages of the torch wheel, found through the library path ops/setup exports.
    let lib_dirs = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    for dir in lib_dirs.split(':').map(Path::new).filter(|d| d.ends_with("torch/lib")) {
        let Some(site) = dir.parent().and_then(Path::parent) else { continue };
        out.push(site.join("nvidia/cu13/lib/libnvjpeg.so.13"));
        out.push(site.join("nvidia/nvjpeg/lib/libnvjpeg.so.12"));
        if let Ok(entries) = std::fs::read_dir(site.join("torchvision.libs")) {
            let mut bundled: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libnvjpeg"))).collect();
            bundled.sort();
            out.extend(bundled);
        }
    }
    out
}

impl NvJpegLibrary {
    /// Finds and loads libnvjpeg and resolves its entry points (no GPU needed).
    pub fn load() -> Result<Self, NvJpegError> {
        let mut tried = Vec::new();
        for path in candidates() {
            // A bare name goes through the dynamic loader's search; a path must exist.
            if path.components().count() > 1 && !path.exists() {
                tried.push(path.display().to_string());
                continue;
            }
            // SAFETY: loading nvJPEG runs no initialisers with preconditions on our side.
            match unsafe { Library::new(&path) } {
                Ok(lib) => return Self::resolve(lib, path),
                Err(_) => tried.push(path.display().to_string()),
            }
        }
        Err(NvJpegError::NotFound { tried: tried.join(", ") })
    }

    fn resolve(lib: Library, path: PathBuf) -> Result<Self, NvJpegError> {
        let err = |e: libloading::Error| NvJpegError::Load { path: path.display().to_string(), reason: e.to_string() };
        // SAFETY: the signatures below are those of nvjpeg.h (CUDA 12/13).
        unsafe {
            let api = Api {
                create_ex: *lib.get::<CreateEx>(b"nvjpegCreateEx\0").map_err(err)?,
                destroy: *lib.get::<Destroy>(b"nvjpegDestroy\0").map_err(err)?,
                state_create: *lib.get::<StateCreate>(b"nvjpegJpegStateCreate\0").map_err(err)?,
                state_destroy: *lib.get::<StateDestroy>(b"nvjpegJpegStateDestroy\0").map_err(err)?,
                get_image_info: *lib.get::<GetImageInfo>(b"nvjpegGetImageInfo\0").map_err(err)?,
                decode: *lib.get::<Decode>(b"nvjpegDecode\0").map_err(err)?,
                batched_init: *lib.get::<BatchedInit>(b"nvjpegDecodeBatchedInitialize\0").map_err(err)?,
                decode_batched: *lib.get::<DecodeBatched>(b"nvjpegDecodeBatched\0").map_err(err)?,
                _lib: lib,
            };
            Ok(NvJpegLibrary { api, path })
        }
    }
}

/// What the header says about a JPEG, and whether the GPU decoders take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    pub width: u32,
    pub height: u32,
    pub components: i32,
    pub subsampling: i32,
    pub progressive: bool,
}

impl JpegInfo {
    /// Baseline, 1 or 3 components, a subsampling the batched decoders support.
    pub fn gpu_decodable(&self) -> bool {
        !self.progressive && (self.components == 1 || self.components == 3) && GPU_SUBSAMPLINGS.contains(&self.subsampling)
    }
}

/// The frame type of a JPEG from its SOF marker: Some(true) = progressive (SOF2/6/10/14),
/// Some(false) = sequential; None when no SOF is found in well-formed segments.
pub fn is_progressive(bytes: &[u8]) -> Option<bool> {
    let mut i = 2; // after SOI
    if bytes.get(..2) != Some(&[0xFF, 0xD8]) {
        return None;
    }
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            return Some(matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE));
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if len < 2 || marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// An nvJPEG decoder bound to the current CUDA device: handle, decode state, and the batch
/// size the batched decoder was last initialised for.
pub struct NvJpeg {
    lib: NvJpegLibrary,
    handle: Handle,
    state: State,
    batch_size: usize,
    pub device: Device,
    /// "hardware" or "default" (hybrid GPU).
    pub backend: &'static str,
}

// The handle and state are used by one thread at a time (the loader's GPU thread).
unsafe impl Send for NvJpeg {}

impl Drop for NvJpeg {
    fn drop(&mut self) {
        // SAFETY: both were created by this library and are destroyed once.
        unsafe {
            (self.lib.api.state_destroy)(self.state);
            (self.lib.api.destroy)(self.handle);
        }
    }
}

fn check(call: &'static str, status: c_int) -> Result<(), NvJpegError> {
    if status == 0 {
        Ok(())
    } else {
        Err(NvJpegError::Status { call, status: Status(status) })
    }
}

impl NvJpeg {
    /// Opens nvJPEG on `device` (CUDA only): the hardware backend where the GPU has JPEG
    /// engines, else the default (hybrid) one.
    pub fn open(device: Device) -> Result<Self, NvJpegError> {
        if !matches!(device, Device::Cuda(_)) || !tch::Cuda::is_available() {
            return Err(NvJpegError::NoCuda);
        }
        let lib = NvJpegLibrary::load()?;
        let api = &lib.api;
        let mut handle: Handle = std::ptr::null_mut();
        let mut backend = "hardware";
        // SAFETY: null allocators select cudaMalloc/cudaHostAlloc; flags must be 0.
        let mut status = unsafe { (api.create_ex)(BACKEND_HARDWARE, std::ptr::null_mut(), std::ptr::null_mut(), 0, &mut handle) };
        if status != 0 {
            backend = "default";
            // SAFETY: as above.
            status = unsafe { (api.create_ex)(BACKEND_DEFAULT, std::ptr::null_mut(), std::ptr::null_mut(), 0, &mut handle) };
        }
        check("nvjpegCreateEx", status)?;
        let mut state: State = std::ptr::null_mut();
        // SAFETY: valid handle.
        if let Err(e) = check("nvjpegJpegStateCreate", unsafe { (api.state_create)(handle, &mut state) }) {
            // SAFETY: the handle was created above and is not used again.
            unsafe { (api.destroy)(handle) };
            return Err(e);
        }
        Ok(NvJpeg { lib, handle, state, batch_size: 0, device, backend })
    }

    /// Header fields of one JPEG.
    pub fn info(&self, bytes: &[u8]) -> Result<JpegInfo, NvJpegError> {
        let (mut comps, mut ss) = (0, 0);
        let (mut ws, mut hs) = ([0 as c_int; MAX_COMPONENT], [0 as c_int; MAX_COMPONENT]);
        // SAFETY: the pointer/length describe `bytes`; the arrays have NVJPEG_MAX_COMPONENT slots.
        let status = unsafe { (self.lib.api.get_image_info)(self.handle, bytes.as_ptr(), bytes.len(), &mut comps, &mut ss, ws.as_mut_ptr(), hs.as_mut_ptr()) };
        check("nvjpegGetImageInfo", status)?;
        Ok(JpegInfo { width: ws[0].max(0) as u32, height: hs[0].max(0) as u32, components: comps, subsampling: ss, progressive: is_progressive(bytes).unwrap_or(true) })
    }

    /// Decodes `jpegs`, (slot, bytes) pairs, into `out` (uint8 [n, 3, max_h, max_w] on this
    /// device; each image at the top-left of its slot, planar RGB). One batched call; when that
    /// fails, image by image, so one bad image costs only itself. Returns each image's result.
    pub fn decode_into(&mut self, jpegs: &[(usize, &[u8])], out: &Tensor) -> Vec<Result<(), NvJpegError>> {
        let n = jpegs.len();
        if n == 0 {
            return Vec::new();
        }
        let (_, _, hmax, wmax) = out.size4().unwrap_or((0, 0, 0, 0));
        let plane = (hmax * wmax) as usize;
        let base = out.data_ptr() as *mut c_uchar;
        let mut dest: Vec<NvImage> = jpegs
            .iter()
            .map(|&(k, _)| {
                // SAFETY: slot k's three planes lie inside `out`, which outlives the decode.
                let at = |c: usize| unsafe { base.add((k * 3 + c) * plane) };
                NvImage { channel: [at(0), at(1), at(2), std::ptr::null_mut()], pitch: [wmax as usize, wmax as usize, wmax as usize, 0] }
            })
            .collect();
        let api = &self.lib.api;
        let stream: CudaStream = std::ptr::null_mut(); // the legacy default stream, which torch also uses
        let batched = (|| {
            if self.batch_size != n {
                // SAFETY: valid handle/state; one host thread drives the batch.
                check("nvjpegDecodeBatchedInitialize", unsafe { (api.batched_init)(self.handle, self.state, n as c_int, 1, OUTPUT_RGB) })?;
                self.batch_size = n;
            }
            let ptrs: Vec<*const c_uchar> = jpegs.iter().map(|j| j.1.as_ptr()).collect();
            let lens: Vec<usize> = jpegs.iter().map(|j| j.1.len()).collect();
            // SAFETY: n input buffers and n destinations, each large enough for its image.
            check("nvjpegDecodeBatched", unsafe { (api.decode_batched)(self.handle, self.state, ptrs.as_ptr(), lens.as_ptr(), dest.as_mut_ptr(), stream) })
        })();
        let results = match batched {
            Ok(()) => (0..n).map(|_| Ok(())).collect(),
            Err(_) => {
                // A failed batch must be re-initialised before the next batched call.
                self.batch_size = 0;
                jpegs
                    .iter()
                    .zip(dest.iter_mut())
                    .map(|((_, j), d)| {
                        // SAFETY: as above, one image.
                        check("nvjpegDecode", unsafe { (api.decode)(self.handle, self.state, j.as_ptr(), j.len(), OUTPUT_RGB, d, stream) })
                    })
                    .collect()
            }
        };
        // No synchronisation: torch's kernels on `out` run on the same (default) stream, so they
        // wait for the decode, and the host stays free to prepare the next batch. The JPEG bytes
        // live in the dataset's memory mapping for the whole run.
        results
    }
}

/// A uint8 [n, 3, max_h, max_w] tensor for a batch of images of `sizes` (w, h).
pub fn batch_buffer(sizes: &[(u32, u32)], device: Device) -> Tensor {
    let hmax = sizes.iter().map(|s| s.1).max().unwrap_or(1) as i64;
    let wmax = sizes.iter().map(|s| s.0).max().unwrap_or(1) as i64;
    Tensor::zeros([sizes.len() as i64, 3, hmax, wmax], (Kind::Uint8, device))
}
