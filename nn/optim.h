// AdamW (decoupled weight decay, bias-corrected moments) with parameter groups, and
// global-norm gradient clipping.
//
// The update runs as one fused Backend::adamw call per (device, learning rate, step)
// -- in a normal run exactly one call per optimizer step. Per element:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * wd * p
// which is torch.optim.AdamW's update. As in torch, a parameter without a gradient is
// skipped (its moments and step do not advance), so each parameter keeps its own step.
//
// Capturable mode (options.capturable, as torch's AdamW(capturable=True)): the step count
// and the learning rate live in scalars on the parameters' device, the count is advanced
// there, and the fused update reads both from device memory. Nothing the host passes to
// a kernel then changes between steps, so a step (forward, backward, optimizer) can be
// captured in a CUDA graph and replayed (cuda/graph.h) with correct bias correction.
// It needs one shared count: the parameters with a gradient at the first step take part,
// and exactly those must have one at every later step (an error otherwise); all on one
// device. Run one step before capturing (it creates the
// moments and the device scalars), and call set_lr between replays, not inside a capture.
//
// State for checkpointing: state_dict() gives named tensors "exp_avg.<param>",
// "exp_avg_sq.<param>" and "step.<param>" (int64, shape []), ready for
// save_safetensors; load_state_dict() takes them back (strict, all problems listed).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "nn/module.h"

namespace mms::nn {

struct ParamGroup {
  std::string name;      // "decay", "no_decay", "head", ... (messages only)
  NamedTensors params;   // (dotted name, parameter); names key the optimizer state
  double weight_decay = 0.0;
  double lr_scale = 1.0;  // this group's lr = optimizer lr * lr_scale
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool capturable = false;  // step count and lr in device scalars (see above)
};

struct AdamWState {
  Tensor exp_avg;     // first moment, like the parameter
  Tensor exp_avg_sq;  // second moment
  int64_t step = 0;   // updates applied to this parameter
};

class AdamW {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});

  // Applies one update to every parameter that has a gradient.
  void step();
  void zero_grad();  // clears the gradients of every parameter in every group

  double lr() const { return options_.lr; }
  // Capturable: also writes the device scalar (a kernel on the device's stream).
  void set_lr(double lr);
  const AdamWOptions& options() const { return options_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // The state of one parameter (by its name in the groups); throws when it has none yet.
  const AdamWState& state(const std::string& param_name) const;
  bool has_state(const std::string& param_name) const { return state_.count(param_name) > 0; }

  NamedTensors state_dict() const;
  void load_state_dict(const StateDict& state);

 private:
  void step_capturable();
  // Capturable: copies the device count into every state's `step` (a read of the device).
  void refresh_steps() const;

  std::vector<ParamGroup> groups_;
  AdamWOptions options_;
  mutable std::map<std::string, AdamWState> state_;
  Tensor device_step_;  // capturable: int64 [] on the parameters' device, updates so far
  Tensor device_lr_;    // capturable: float64 [] on the parameters' device
  std::set<std::string> capturable_members_;  // capturable: the parameters of the first step
};

// True for parameters that should not be weight-decayed: tensors of rank <= 1 (biases,
// norm weights, CLIP's class_embedding and logit_scale) and any parameter owned by a
// module whose type name ends in "Norm" (LayerNorm, ...).
bool is_no_decay(const std::string& name, const Tensor& param, const Module* owner);

// Two groups over module's parameters, in registration order: "decay" (weight_decay)
// and "no_decay" (0), split by is_no_decay. Names are prefixed with `prefix.` if given.
std::vector<ParamGroup> decay_param_groups(const Module& module, double weight_decay,
                                           const std::string& prefix = "");

// Scales all gradients in place so that their global L2 norm is at most max_norm
// (coefficient max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_). Returns
// the norm before clipping. Parameters without a gradient are ignored; a non-finite
// norm is returned and nothing is scaled.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);

// The same clipping without reading the norm on the host (nothing waits for the device,
// so a step that clips can be queued ahead of the GPU or captured in a CUDA graph): the
// coefficient min(1, max_norm / (norm + 1e-6)) is computed on the gradients' device, 1
// when the norm is not finite, and every gradient is multiplied by it (by exactly 1 when
// no clipping is needed; not at all when max_norm is +inf, which asks for the norm
// only). Returns the norm, a scalar on that device, unread (float64 on the CPU; float32
// on CUDA, whose elementwise kernels are float32 -- the sum itself is float64 on both);
// an undefined tensor when no parameter has a gradient. One device only.
Tensor clip_grad_norm_deferred(const std::vector<Tensor>& params, double max_norm);

}  // namespace mms::nn
