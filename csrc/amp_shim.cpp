// Autocast (automatic mixed precision) switches for Rust. tch's own autocast() only drives the
// CUDA float16 flavour through a deprecated entry point; silt needs bfloat16, on the CPU as well
// as on CUDA, which is what at::autocast's per-device-type functions offer.
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(int d) { return d == 1 ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Turns autocast on for `device` (0 = CPU, 1 = CUDA) computing in `dtype` (0 = bfloat16,
// 1 = float16). Returns the previous state to hand back to silt_autocast_exit: bit 0 = was
// enabled; -1 on error.
int silt_autocast_enter(int device, int dtype) {
  try {
    auto dev = device_type(device);
    int prev = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kHalf : at::kBFloat16);
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::increment_nesting();
    return prev;
  } catch (...) {
    return -1;
  }
}

// Leaves the region: restores the previous state; the cast cache is dropped when the outermost
// region ends (as torch.autocast's __exit__ does).
void silt_autocast_exit(int device, int prev) {
  try {
    auto dev = device_type(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(dev, (prev & 1) != 0);
  } catch (...) {
  }
}

int silt_autocast_is_enabled(int device) {
  try {
    return at::autocast::is_autocast_enabled(device_type(device)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

}  // extern "C"
