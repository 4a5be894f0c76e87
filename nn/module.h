// Module: a named tree of parameters, PyTorch-style, using Hugging Face dotted names.
//
// A module registers its parameters ("weight", "bias"), buffers and child modules
// ("self_attn", "layers" -> "0", "1", ...) under local names; named_parameters() walks
// the tree and joins the names with dots, so a CLIP tower built from these modules
// lists exactly the names in a Hugging Face checkpoint
// ("encoder.layers.0.self_attn.q_proj.weight").
//
// Identity of parameters: subclasses keep plain `Tensor` members (Linear::weight) that
// alias the registered tensors (same TensorImpl). Everything that changes a parameter
// -- to(Device), to(DType), load_state_dict -- updates the TensorImpl in place, so those
// members, an optimizer holding the same Tensors, and the registry all stay in sync.
// Never re-assign a member after registering it; write into it instead.
//
// There is no virtual forward(): each module has its own signature (attention takes a
// mask, an encoder layer takes a causal flag...). Call the concrete type.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mms::nn {

// Name -> tensor, sorted by name (what safetensors files hold).
using StateDict = std::map<std::string, Tensor>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What load_state_dict found, when strict == false lets it go on.
struct LoadResult {
  std::vector<std::string> missing;     // in the module, not in the dict (left untouched)
  std::vector<std::string> unexpected;  // in the dict, not in the module (ignored)
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  explicit Module(std::string type_name = "Module") : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // "Linear", "LayerNorm", ... (used in messages).
  const std::string& type_name() const { return type_name_; }

  // ---- registration -------------------------------------------------------------
  // Registers `value` as a trainable parameter (sets requires_grad) and returns a handle
  // aliasing it. Names are local ("weight"); they may not contain '.' and must be unique
  // among this module's parameters, buffers and children.
  Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true);
  // A non-trainable tensor that moves with the module (to(Device); to(DType) converts it
  // only when it is floating). Persistent buffers appear in state_dict().
  Tensor register_buffer(const std::string& name, Tensor value, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // ---- lookup -------------------------------------------------------------------
  // Recursive, in registration order, with dotted names ("a.b.weight"). prefix is
  // prepended with a dot when non-empty.
  NamedTensors named_parameters(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  NamedTensors named_buffers(const std::string& prefix = "", bool persistent_only = false) const;
  // Direct children, in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // This module ("" or prefix) and all descendants, depth first.
  std::vector<std::pair<std::string, std::shared_ptr<const Module>>> named_modules(
      const std::string& prefix = "") const;
  // The parameter, buffer or descendant tensor at a dotted path; throws when absent.
  Tensor tensor_at(const std::string& dotted_name) const;
  // A direct or dotted descendant ("encoder.layers.3"); throws when absent.
  std::shared_ptr<Module> module_at(const std::string& dotted_name) const;
  int64_t num_parameters() const;  // total element count

  // ---- mode ---------------------------------------------------------------------
  // Recursive, like torch: dropout is active only in training mode.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- placement (in place: see the header comment) -------------------------------
  // Moves every parameter and buffer; gradients are dropped.
  Module& to(Device device);
  // Converts floating parameters and floating buffers; integer buffers keep their type.
  Module& to(DType dtype);
  void zero_grad();  // clears every parameter's .grad

  // ---- state dict ---------------------------------------------------------------
  // Parameters and persistent buffers by dotted name. The tensors alias the module's.
  StateDict state_dict() const;
  // The same, in registration order (stable order for writing files).
  NamedTensors ordered_state_dict() const;
  // Copies values into the existing tensors (converting dtype and device), so handles
  // stay valid. Shape mismatches are always an error. strict: missing or unexpected
  // names are an error too. Every problem is listed in one message, each kind sorted.
  // Nothing is written unless all checks pass.
  LoadResult load_state_dict(const StateDict& state, bool strict = true);

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  struct Entry {
    std::string name;
    Tensor tensor;
    bool is_buffer = false;
    bool persistent = true;
  };
  void check_new_name(const std::string& name) const;
  void collect_tensors(const std::string& prefix, bool params, bool buffers, bool persistent_only,
                       NamedTensors& out) const;

  std::string type_name_;
  std::vector<Entry> tensors_;  // parameters and buffers, registration order
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A numbered list of children ("0", "1", ...), as torch.nn.ModuleList.
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    add_child(std::to_string(items_.size()), module);
    items_.push_back(module);
    return module;
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const { return items_.at(i); }
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    return std::dynamic_pointer_cast<M>(items_.at(i));
  }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

// Replaces the contents of `target` (storage, shape, strides, dtype) with those of
// `source`, keeping target's TensorImpl (and its autograd flags), so every handle to
// target sees the new value. Used by Module::to and useful for "param.data = x".
void assign_in_place(const Tensor& target, const Tensor& source);

}  // namespace mms::nn
