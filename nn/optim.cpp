#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>

#include "autograd/api.h"
#include "tensor/backend.h"
#include "tensor/profile.h"

namespace mms::nn {

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : groups_(std::move(groups)), options_(options) {
  MMS_CHECK(options_.lr >= 0 && options_.eps >= 0 && options_.beta1 >= 0 && options_.beta1 < 1 &&
                options_.beta2 >= 0 && options_.beta2 < 1,
            "AdamW: invalid options lr=", options_.lr, " betas=(", options_.beta1, ", ",
            options_.beta2, ") eps=", options_.eps);
  std::set<std::string> names;
  for (const ParamGroup& g : groups_) {
    MMS_CHECK(g.weight_decay >= 0 && g.lr_scale >= 0, "AdamW: group '", g.name,
              "' has negative weight_decay or lr_scale");
    for (const auto& [name, p] : g.params) {
      MMS_CHECK(names.insert(name).second, "AdamW: parameter '", name, "' appears in more than one group");
      MMS_CHECK(p.defined() && is_floating(p.dtype()), "AdamW: parameter '", name,
                "' must be a defined floating tensor");
    }
  }
}

void AdamW::set_lr(double lr) {
  options_.lr = lr;
  if (device_lr_.defined()) ops::fill_(device_lr_, lr);
}

void AdamW::step() {
  if (options_.capturable) {
    step_capturable();
    profile_mark_op("adamw");
    return;
  }
  // Bucket the work by what one fused call shares: device, lr and step count.
  struct Key {
    int device_type, device_index;
    double lr;
    int64_t step;
    bool operator<(const Key& o) const {
      return std::tie(device_type, device_index, lr, step) < std::tie(o.device_type, o.device_index, o.lr, o.step);
    }
  };
  std::map<Key, std::vector<Backend::AdamWTensor>> calls;
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      MMS_CHECK(p.is_contiguous() && !p.storage()->read_only(), "AdamW: parameter '", name,
                "' must be contiguous and writable");
      MMS_CHECK(grad.shape() == p.shape() && grad.device() == p.device(), "AdamW: gradient of '", name,
                "' is ", shape_str(grad.shape()), " on ", grad.device().str(), ", parameter is ",
                shape_str(p.shape()), " on ", p.device().str());
      grad = grad.to(p.dtype()).contiguous();
      AdamWState& s = state_[name];
      if (!s.exp_avg.defined()) {
        s.exp_avg = zeros_like(p);
        s.exp_avg_sq = zeros_like(p);
      }
      s.step += 1;
      const Key key{static_cast<int>(p.device().type), p.device().index, options_.lr * g.lr_scale, s.step};
      calls[key].push_back({p.detach(), grad, s.exp_avg, s.exp_avg_sq, g.weight_decay});
    }
  }
  for (const auto& [key, tensors] : calls) {
    const Device device = tensors.front().param.device();
    backend_for(device).adamw(tensors, key.lr, options_.beta1, options_.beta2, options_.eps, key.step);
  }
  profile_mark_op("adamw");
}

void AdamW::step_capturable() {
  // One call per lr_scale. The count is shared, so the parameters that take part must be
  // the same at every step: those with a gradient at the first step (a parameter the loss
  // never reaches, like CLIP's logit_scale under a score head, stays out for good).
  // Everything is checked before any state changes, so a refused step loses nothing.
  struct Member {
    const std::string* name;
    Tensor param, grad;
    const ParamGroup* group;
  };
  std::vector<Member> members;
  const bool first_step = capturable_members_.empty();
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) {
      Tensor grad = p.grad();
      const bool member = first_step ? grad.defined() : capturable_members_.count(name) > 0;
      MMS_CHECK(grad.defined() == member, "AdamW(capturable): parameter '", name, "' ",
                member ? "has no gradient, but had one at the first step"
                       : "has a gradient, but had none at the first step",
                "; capturable mode keeps one step count for the parameters of the first step, so the "
                "same ones must have a gradient at every step");
      if (!member) continue;
      MMS_CHECK(members.empty() || p.device() == members.front().param.device(), "AdamW(capturable): parameters on ",
                members.empty() ? "" : members.front().param.device().str(), " and ", p.device().str(),
                "; one device only");
      MMS_CHECK(p.is_contiguous() && !p.storage()->read_only() && grad.shape() == p.shape() &&
                    grad.device() == p.device(),
                "AdamW(capturable): parameter '", name, "' must be contiguous and writable, with a gradient of ",
                "its shape on its device");
      // What the fused kernels take (CUDA: float32; CPU: float32 or float64), checked
      // here rather than in the backend, where earlier groups would already have moved.
      MMS_CHECK(p.dtype() == DType::Float32 || (p.device().is_cpu() && p.dtype() == DType::Float64),
                "AdamW(capturable): parameter '", name, "' is ", dtype_name(p.dtype()), " on ", p.device().str(),
                "; the fused update takes float32 (or float64 on the CPU)");
      MMS_CHECK(!device_step_.defined() || p.device() == device_step_.device(), "AdamW(capturable): parameter '",
                name, "' is on ", p.device().str(), " but the step count lives on ", device_step_.device().str());
      members.push_back({&name, p, grad, &g});
    }
  }
  if (members.empty()) return;
  // The first capturable step starts the device count from the states' count, which
  // must be one number (0 for a fresh optimizer, a checkpoint's otherwise).
  int64_t done = 0;
  if (!device_step_.defined()) {
    auto steps_of = [&](const Member& m) {
      auto it = state_.find(*m.name);
      return it == state_.end() ? int64_t(0) : it->second.step;
    };
    done = steps_of(members.front());
    for (const Member& m : members)
      MMS_CHECK(steps_of(m) == done, "AdamW(capturable): parameters '", *members.front().name, "' (", done,
                " steps) and '", *m.name, "' (", steps_of(m), " steps) differ; capturable mode keeps one "
                "step count, so its parameters must start from one (a fresh optimizer or a complete checkpoint)");
  }
  const Device device = members.front().param.device();
  std::map<double, std::vector<Backend::AdamWTensor>> calls;
  for (const Member& m : members) {
    AdamWState& s = state_[*m.name];
    if (!s.exp_avg.defined()) {
      s.exp_avg = zeros_like(m.param);
      s.exp_avg_sq = zeros_like(m.param);
    }
    s.step += 1;  // the host's view, exact in eager use; refresh_steps() after replays
    calls[m.group->lr_scale].push_back({m.param.detach(), m.grad.to(m.param.dtype()).contiguous(), s.exp_avg,
                                        s.exp_avg_sq, m.group->weight_decay});
  }
  if (!device_step_.defined()) {
    device_step_ = full({}, static_cast<double>(done), DType::Int64, device);
    device_lr_ = full({}, options_.lr, DType::Float64, device);
  }
  ops::copy_(device_step_, ops::add(device_step_, ones({}, DType::Int64, device)));  // t += 1, on the device
  for (const auto& [lr_scale, tensors] : calls)
    backend_for(device).adamw_device_scalars(tensors, device_lr_, lr_scale, options_.beta1, options_.beta2,
                                             options_.eps, device_step_);
  if (first_step)
    for (const Member& m : members) capturable_members_.insert(*m.name);
}

void AdamW::refresh_steps() const {
  if (!device_step_.defined()) return;
  const int64_t count = static_cast<int64_t>(device_step_.item());
  for (auto& [name, s] : state_)  // the count is the participants'; others keep their own
    if (capturable_members_.count(name) > 0) s.step = count;
}

void AdamW::zero_grad() {
  for (const ParamGroup& g : groups_)
    for (const auto& [_, p] : g.params) Tensor(p).set_grad(Tensor());
}

const AdamWState& AdamW::state(const std::string& param_name) const {
  refresh_steps();
  auto it = state_.find(param_name);
  MMS_CHECK(it != state_.end(), "AdamW: no state for parameter '", param_name, "' (not updated yet?)");
  return it->second;
}

NamedTensors AdamW::state_dict() const {
  refresh_steps();
  NamedTensors out;
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, _] : g.params) {
      auto it = state_.find(name);
      if (it == state_.end()) continue;
      out.emplace_back("exp_avg." + name, it->second.exp_avg);
      out.emplace_back("exp_avg_sq." + name, it->second.exp_avg_sq);
      out.emplace_back("step." + name, scalar_tensor(static_cast<double>(it->second.step), DType::Int64));
    }
  }
  return out;
}

void AdamW::load_state_dict(const StateDict& state) {
  std::map<std::string, Tensor> params;
  for (const ParamGroup& g : groups_)
    for (const auto& [name, p] : g.params) params.emplace(name, p);

  std::vector<std::string> problems;
  std::map<std::string, AdamWState> loaded;
  std::set<std::string> used;
  for (const auto& [key, tensor] : state) {
    const size_t dot = key.find('.');
    const std::string kind = key.substr(0, dot);
    const std::string name = dot == std::string::npos ? "" : key.substr(dot + 1);
    if ((kind != "exp_avg" && kind != "exp_avg_sq" && kind != "step") || !params.count(name)) {
      problems.push_back("unexpected: " + key);
      continue;
    }
    const Tensor& p = params.at(name);
    AdamWState& s = loaded[name];
    if (kind == "step") {
      if (tensor.numel() != 1 || tensor.item() < 1 || tensor.item() != std::floor(tensor.item())) {
        problems.push_back("bad step: " + key + " (need one whole number >= 1)");
        continue;
      }
      s.step = static_cast<int64_t>(tensor.item());
    } else if (tensor.shape() != p.shape()) {
      problems.push_back("shape mismatch: " + key + " (parameter " + shape_str(p.shape()) + ", state " +
                         shape_str(tensor.shape()) + ")");
      continue;
    } else if (!is_floating(tensor.dtype())) {
      problems.push_back("dtype mismatch: " + key + " (moments are floating point, state " +
                         dtype_name(tensor.dtype()) + ")");
      continue;
    } else {
      // A fresh, writable copy in the parameter's dtype and device (the source may be
      // a read-only memory map).
      Tensor copy = tensor.to(p.device()).to(p.dtype()).clone();
      (kind == "exp_avg" ? s.exp_avg : s.exp_avg_sq) = copy;
    }
  }
  for (const auto& [name, s] : loaded)
    if (!s.exp_avg.defined() || !s.exp_avg_sq.defined() || s.step == 0)
      problems.push_back("incomplete: " + name + " needs exp_avg, exp_avg_sq and step");
  if (!problems.empty()) {
    std::sort(problems.begin(), problems.end());
    std::ostringstream os;
    os << "AdamW.load_state_dict: " << problems.size() << " problem(s):";
    for (const auto& p : problems) os << "\n  " << p;
    throw Error(os.str());
  }
  if (options_.capturable) {
    std::set<int64_t> steps;
    for (const auto& [_, s] : loaded) steps.insert(s.step);
    MMS_CHECK(steps.size() <= 1, "AdamW.load_state_dict: capturable mode keeps one step count, but the state has ",
              steps.size(), " different ones");
    // In place: a captured graph holds the scalars' addresses.
    if (device_step_.defined())
      ops::fill_(device_step_, steps.empty() ? 0.0 : static_cast<double>(*steps.begin()));
  }
  state_ = std::move(loaded);
}

bool is_no_decay(const std::string& name, const Tensor& param, const Module* owner) {
  if (param.dim() <= 1) return true;
  if (owner) {
    const std::string& type = owner->type_name();
    if (type.size() >= 4 && type.compare(type.size() - 4, 4, "Norm") == 0) return true;
  }
  return false;
}

std::vector<ParamGroup> decay_param_groups(const Module& module, double weight_decay, const std::string& prefix) {
  ParamGroup decay{"decay", {}, weight_decay, 1.0};
  ParamGroup no_decay{"no_decay", {}, 0.0, 1.0};
  // Walk modules so each parameter is seen with its owner.
  std::map<std::string, const Module*> owner_of;
  for (const auto& [path, m] : module.named_modules(prefix))
    for (const auto& [local, _] : m->named_parameters())
      if (local.find('.') == std::string::npos)
        owner_of[path.empty() ? local : path + "." + local] = m.get();
  for (const auto& [name, p] : module.named_parameters(prefix)) {
    auto it = owner_of.find(name);
    (is_no_decay(name, p, it == owner_of.end() ? nullptr : it->second) ? no_decay : decay)
        .params.emplace_back(name, p);
  }
  return {decay, no_decay};
}

Tensor clip_grad_norm_deferred(const std::vector<Tensor>& params, double max_norm) {
  MMS_CHECK(max_norm > 0, "clip_grad_norm_: max_norm must be positive, got ", max_norm);
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    MMS_CHECK(grads.empty() || g.device() == grads.front().device(), "clip_grad_norm_: gradients on ",
              grads.front().device().str(), " and ", g.device().str(), "; one device only");
    grads.push_back(g.contiguous());
  }
  if (grads.empty()) return Tensor();
  const Device device = grads.front().device();
  NoGradGuard no_grad;
  Tensor squares = empty({}, DType::Float64, device);
  backend_for(device).sum_of_squares_into(grads, squares);  // accumulated in float64 on every device
  // The few scalar ops after the sum run in float64 on the CPU; CUDA's elementwise
  // kernels are float32, so there the sum is rounded to float32 first (a norm beyond
  // float32's range, ~1.8e19, then reads as inf: not clipped, and reported non-finite,
  // which the trainer stops on). The coefficient is cast to each gradient's dtype.
  const DType scalar_dtype = device.is_cuda() ? DType::Float32 : DType::Float64;
  Tensor norm = ops::sqrt(squares.to(scalar_dtype));
  if (std::isinf(max_norm)) {  // "no clipping, just the norm": leave the gradients alone
    profile_mark_op("clip_grad_norm");
    return norm;
  }
  Tensor wanted = ops::binary(BinaryOp::Minimum,
                              ops::binary(BinaryOp::Div, full({}, max_norm, scalar_dtype, device),
                                          ops::add_scalar(norm, 1e-6)),
                              full({}, 1.0, scalar_dtype, device));
  // |norm| < inf is false for NaN and +inf: leave such gradients as they are.
  Tensor finite = ops::binary(BinaryOp::Lt, ops::abs(norm),
                              full({}, std::numeric_limits<double>::infinity(), scalar_dtype, device));
  Tensor coef = ops::where(finite, wanted, full({}, 1.0, scalar_dtype, device));
  std::map<DType, Tensor> coef_as;  // one cast per gradient dtype, not per gradient
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    auto [it, fresh] = coef_as.try_emplace(g.dtype());
    if (fresh) it->second = ops::cast(coef, g.dtype());
    Tensor(p).set_grad(ops::mul(g, it->second));
  }
  profile_mark_op("clip_grad_norm");
  return norm;
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  Tensor norm = clip_grad_norm_deferred(params, max_norm);
  return norm.defined() ? norm.item() : 0.0;
}

}  // namespace mms::nn
