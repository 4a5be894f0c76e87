#include "nn/module.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "autograd/api.h"

namespace mms::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}
}  // namespace

void assign_in_place(const Tensor& target, const Tensor& source) {
  MMS_CHECK(target.defined() && source.defined(), "assign_in_place: undefined tensor");
  TensorImpl& t = target.impl();
  const TensorImpl& s = source.impl();
  t.storage = s.storage;
  t.shape = s.shape;
  t.strides = s.strides;
  t.offset = s.offset;
  t.dtype = s.dtype;
}

void Module::check_new_name(const std::string& name) const {
  MMS_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_,
            ": invalid name '", name, "' (non-empty, no '.')");
  for (const Entry& e : tensors_)
    MMS_CHECK(e.name != name, type_name_, ": name '", name, "' is already registered");
  for (const auto& [child, _] : children_)
    MMS_CHECK(child != name, type_name_, ": name '", name, "' is already a child module");
}

Tensor Module::register_parameter(const std::string& name, Tensor value, bool requires_grad) {
  check_new_name(name);
  MMS_CHECK(value.defined(), type_name_, ": parameter '", name, "' is undefined");
  // A parameter is a leaf: never alias a tensor that has history.
  if (!value.is_leaf()) value = value.detach();
  if (requires_grad) value.set_requires_grad(true);
  tensors_.push_back({name, value, false, true});
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value, bool persistent) {
  check_new_name(name);
  MMS_CHECK(value.defined(), type_name_, ": buffer '", name, "' is undefined");
  tensors_.push_back({name, value, true, persistent});
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  MMS_CHECK(module != nullptr, type_name_, ": child module '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

void Module::collect_tensors(const std::string& prefix, bool params, bool buffers,
                             bool persistent_only, NamedTensors& out) const {
  for (const Entry& e : tensors_) {
    if (e.is_buffer ? (!buffers || (persistent_only && !e.persistent)) : !params) continue;
    out.emplace_back(join(prefix, e.name), e.tensor);
  }
  for (const auto& [name, child] : children_)
    child->collect_tensors(join(prefix, name), params, buffers, persistent_only, out);
}

NamedTensors Module::named_parameters(const std::string& prefix) const {
  NamedTensors out;
  collect_tensors(prefix, true, false, false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers(const std::string& prefix, bool persistent_only) const {
  NamedTensors out;
  collect_tensors(prefix, false, true, persistent_only, out);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

std::vector<std::pair<std::string, std::shared_ptr<const Module>>> Module::named_modules(
    const std::string& prefix) const {
  std::vector<std::pair<std::string, std::shared_ptr<const Module>>> out;
  // shared_from_this needs the module to be owned by a shared_ptr; a module on the
  // stack still lists itself, through a non-owning handle.
  std::shared_ptr<const Module> self;
  try {
    self = shared_from_this();
  } catch (const std::bad_weak_ptr&) {
    self = std::shared_ptr<const Module>(this, [](const Module*) {});
  }
  out.emplace_back(prefix, self);
  for (const auto& [name, child] : children_) {
    auto sub = child->named_modules(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::shared_ptr<Module> Module::module_at(const std::string& dotted_name) const {
  const size_t dot = dotted_name.find('.');
  const std::string head = dotted_name.substr(0, dot);
  for (const auto& [name, child] : children_) {
    if (name != head) continue;
    return dot == std::string::npos ? child : child->module_at(dotted_name.substr(dot + 1));
  }
  fail(type_name_, ": no child module '", dotted_name, "'");
}

Tensor Module::tensor_at(const std::string& dotted_name) const {
  const size_t dot = dotted_name.find('.');
  if (dot == std::string::npos) {
    for (const Entry& e : tensors_)
      if (e.name == dotted_name) return e.tensor;
    fail(type_name_, ": no parameter or buffer '", dotted_name, "'");
  }
  return module_at(dotted_name.substr(0, dot))->tensor_at(dotted_name.substr(dot + 1));
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& t : parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, child] : children_) child->train(on);
}

Module& Module::to(Device device) {
  for (Entry& e : tensors_) {
    if (e.tensor.device() == device) continue;
    e.tensor.set_grad(Tensor());
    assign_in_place(e.tensor, e.tensor.to(device));
  }
  for (auto& [_, child] : children_) child->to(device);
  return *this;
}

Module& Module::to(DType dtype) {
  MMS_CHECK(is_floating(dtype), type_name_, ".to: ", dtype_name(dtype),
            " is not a floating dtype");
  for (Entry& e : tensors_) {
    if (!is_floating(e.tensor.dtype()) || e.tensor.dtype() == dtype) continue;
    e.tensor.set_grad(Tensor());
    assign_in_place(e.tensor, e.tensor.to(dtype));
  }
  for (auto& [_, child] : children_) child->to(dtype);
  return *this;
}

void Module::zero_grad() {
  for (Tensor& t : parameters()) t.set_grad(Tensor());
}

NamedTensors Module::ordered_state_dict() const {
  NamedTensors out;
  collect_tensors("", true, true, true, out);
  return out;
}

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : ordered_state_dict()) out.emplace(name, t);
  return out;
}

LoadResult Module::load_state_dict(const StateDict& state, bool strict) {
  const NamedTensors own = ordered_state_dict();
  LoadResult result;
  std::vector<std::string> mismatched;
  std::set<std::string> own_names;
  for (const auto& [name, t] : own) {
    own_names.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      result.missing.push_back(name);
    } else if (!it->second.defined()) {
      mismatched.push_back(name + " (undefined tensor given)");
    } else if (it->second.shape() != t.shape()) {
      mismatched.push_back(name + " (module " + shape_str(t.shape()) + ", state " +
                           shape_str(it->second.shape()) + ")");
    } else if (is_floating(it->second.dtype()) != is_floating(t.dtype())) {
      // Precision may change on load (an F16 checkpoint into float32 weights); the kind
      // may not: integer bytes read as weights (or the reverse) are garbage.
      mismatched.push_back(name + " (module " + dtype_name(t.dtype()) + ", state " +
                           dtype_name(it->second.dtype()) + ")");
    }
  }
  for (const auto& [name, _] : state)
    if (!own_names.count(name)) result.unexpected.push_back(name);
  std::sort(result.missing.begin(), result.missing.end());
  std::sort(mismatched.begin(), mismatched.end());

  const bool bad = !mismatched.empty() || (strict && (!result.missing.empty() || !result.unexpected.empty()));
  if (bad) {
    std::ostringstream os;
    os << type_name_ << ".load_state_dict: state does not match the module";
    auto list = [&os](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      os << "\n  " << what << " (" << names.size() << "):";
      for (const auto& n : names) os << "\n    " << n;
    };
    if (strict) {
      list("missing", result.missing);
      list("unexpected", result.unexpected);
    }
    list("shape or dtype mismatch", mismatched);
    throw Error(os.str());
  }

  NoGradGuard no_grad;
  for (const auto& [name, t] : own) {
    auto it = state.find(name);
    if (it == state.end()) continue;
    Tensor src = it->second.to(t.device()).to(t.dtype());
    Tensor dst = t;
    if (dst.storage()->read_only() || src.same_impl(dst)) {
      // A memory-mapped destination cannot be written: give it fresh storage.
      if (!src.same_impl(dst)) assign_in_place(dst, src.clone());
      continue;
    }
    ops::copy_(dst, src);
  }
  return result;
}

}  // namespace mms::nn
