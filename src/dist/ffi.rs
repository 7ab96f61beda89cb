//! The C ABI of csrc/c10d_shim.cpp. Tensors are passed as tch's `C_tensor` (an `at::Tensor*`).

use std::ffi::{c_char, c_int};
use torch_sys::C_tensor;

#[repr(C)]
pub struct RawGroup {
    _private: [u8; 0],
}

#[repr(C)]
pub struct RawReducer {
    _private: [u8; 0],
}

#[repr(C)]
pub struct RawWork {
    _private: [u8; 0],
}

extern "C" {
    pub fn silt_c10d_last_error() -> *const c_char;
    pub fn silt_c10d_has_nccl() -> c_int;
    pub fn silt_c10d_init(master_addr: *const c_char, port: u16, rank: c_int, size: c_int, timeout_ms: i64, name: *const c_char, device_index: c_int) -> *mut RawGroup;
    pub fn silt_c10d_subgroup(parent: *mut RawGroup, rank: c_int, size: c_int, name: *const c_char) -> *mut RawGroup;
    pub fn silt_c10d_all_reduce(g: *mut RawGroup, t: *mut C_tensor, op: c_int) -> c_int;
    pub fn silt_c10d_all_reduce_async(g: *mut RawGroup, t: *mut C_tensor, op: c_int) -> *mut RawWork;
    pub fn silt_c10d_wait(w: *mut RawWork) -> c_int;
    pub fn silt_c10d_work_free(w: *mut RawWork);
    pub fn silt_c10d_all_reduce_coalesced(g: *mut RawGroup, ts: *const *mut C_tensor, n: usize, op: c_int) -> c_int;
    pub fn silt_c10d_broadcast(g: *mut RawGroup, t: *mut C_tensor, root: c_int) -> c_int;
    pub fn silt_c10d_all_gather(g: *mut RawGroup, out: *mut C_tensor, input: *mut C_tensor) -> c_int;
    pub fn silt_c10d_reduce_scatter(g: *mut RawGroup, out: *mut C_tensor, input: *mut C_tensor, op: c_int) -> c_int;
    pub fn silt_c10d_barrier(g: *mut RawGroup) -> c_int;
    pub fn silt_c10d_all_gather_autograd(g: *mut RawGroup, input: *const C_tensor) -> *mut C_tensor;
    pub fn silt_c10d_free(g: *mut RawGroup);
    pub fn silt_reducer_new(g: *mut RawGroup, ps: *const *mut C_tensor, n: usize, bucket_bytes: usize) -> *mut RawReducer;
    pub fn silt_reducer_buckets(r: *mut RawReducer) -> usize;
    pub fn silt_reducer_prepare(r: *mut RawReducer) -> c_int;
    pub fn silt_reducer_finish(r: *mut RawReducer, sent_early: *mut usize) -> c_int;
    pub fn silt_reducer_free(r: *mut RawReducer);
}

/// The shim's message for the last failure on this thread.
pub fn last_error() -> String {
    // SAFETY: the shim returns a pointer to a thread-local, NUL-terminated std::string buffer.
    unsafe { std::ffi::CStr::from_ptr(silt_c10d_last_error()).to_string_lossy().into_owned() }
}
