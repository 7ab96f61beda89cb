// optimizer.zero_grad(set_to_none=True) for Rust: tch can zero a gradient but not drop it.
#include <ATen/core/Tensor.h>

extern "C" {

// Drops the gradient instead of zeroing it, so the next backward writes fresh gradients instead
// of adding to zeros (one pass over the model's parameters fewer per step).
void silt_grad_reset(at::Tensor* t) {
  try {
    t->mutable_grad().reset();
  } catch (...) {
  }
}

}  // extern "C"
