// The backward engine: topological order from the root, gradients summed per Node,
// leaves accumulate into .grad, and each Node's closure (with its saved tensors) is
// dropped as soon as it has run unless the graph is retained.
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/profile.h"
#include "tensor/ops.h"

namespace mms {

namespace {
thread_local bool grad_mode_enabled = true;

AutogradMeta& meta_of(TensorImpl& impl) {
  if (!impl.autograd) impl.autograd = std::make_shared<AutogradMeta>();
  return *impl.autograd;
}

// Sums a new contribution into an existing gradient (never in place: a gradient
// tensor handed out earlier must not change under its holder).
// bf16 gradients (of autocast's bf16 activations used twice) are summed in float32 and
// rounded once: the elementwise kernels have no bf16 add.
Tensor accumulate(const Tensor& existing, const Tensor& contribution) {
  if (!existing.defined()) return contribution;
  if (existing.dtype() != DType::BFloat16) return ops::add(existing, contribution);
  return ops::add(existing.to(DType::Float32), contribution.to(DType::Float32)).to(DType::BFloat16);
}

void check_gradient(const Node& node, const Tensor& grad) {
  MMS_CHECK(grad.shape() == node.output_shape, "backward: ", node.op, " received a gradient of shape ",
            shape_str(grad.shape()), " for an output of shape ", shape_str(node.output_shape));
  MMS_CHECK(grad.dtype() == node.output_dtype, "backward: ", node.op, " received a ", dtype_name(grad.dtype()),
            " gradient for a ", dtype_name(node.output_dtype), " output");
}

void accumulate_leaf(TensorImpl& leaf, const Tensor& grad) {
  MMS_CHECK(grad.shape() == leaf.shape, "backward: gradient of shape ", shape_str(grad.shape()),
            " for a leaf of shape ", shape_str(leaf.shape));
  AutogradMeta& meta = meta_of(leaf);
  meta.grad = accumulate(meta.grad, grad.is_contiguous() ? grad : grad.contiguous());
}
}  // namespace

bool grad_enabled() { return grad_mode_enabled; }
NoGradGuard::NoGradGuard() : previous_(grad_mode_enabled) { grad_mode_enabled = false; }
NoGradGuard::~NoGradGuard() { grad_mode_enabled = previous_; }

bool needs_graph(const std::vector<Tensor>& inputs) {
  if (!grad_mode_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor saved(const Tensor& tensor) { return tensor.defined() ? tensor.detach() : tensor; }

namespace {
Tensor record_node(const char* op, const Tensor& output, const std::vector<Tensor>& inputs, BackwardFn backward,
                   FoldingBackwardFn folding_backward) {
  profile_mark_op(op);  // the op's forward work is queued by now (tensor/profile.h)
  if (!needs_graph(inputs)) return output;
  auto node = std::make_shared<Node>();
  node->op = op;
  node->output_shape = output.shape();
  node->output_dtype = output.dtype();
  node->backward = std::move(backward);
  node->folding_backward = std::move(folding_backward);
  for (const Tensor& input : inputs) {
    Edge edge;
    if (input.defined() && input.requires_grad()) {
      const auto& meta = input.impl().autograd;
      if (meta->grad_fn) edge.node = meta->grad_fn;
      else edge.leaf = input.impl_ptr();
    }
    node->inputs.push_back(std::move(edge));
  }
  // A fresh impl for the output so that the caller's handle carries the history.
  Tensor result = make_view(output, output.shape(), output.strides(), output.offset());
  AutogradMeta& meta = meta_of(result.impl());
  meta.requires_grad = true;
  meta.grad_fn = std::move(node);
  return result;
}
}  // namespace

Tensor record(const char* op, const Tensor& output, const std::vector<Tensor>& inputs, BackwardFn backward) {
  return record_node(op, output, inputs, std::move(backward), nullptr);
}

Tensor record_folding(const char* op, const Tensor& output, const std::vector<Tensor>& inputs,
                      FoldingBackwardFn backward) {
  return record_node(op, output, inputs, nullptr, std::move(backward));
}

void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  MMS_CHECK(root.requires_grad(), "backward: tensor of shape ", shape_str(root.shape()),
            " does not require grad and has no graph");
  MMS_CHECK(grad.shape() == root.shape(), "backward: upstream gradient of shape ",
            shape_str(grad.shape()), " does not match the tensor's shape ", shape_str(root.shape()));
  MMS_CHECK(grad.device() == root.device() && grad.dtype() == root.dtype(),
            "backward: upstream gradient is ", dtype_name(grad.dtype()), " on ", grad.device().str(),
            " but the tensor is ", dtype_name(root.dtype()), " on ", root.device().str());
  const std::shared_ptr<Node> start = root.impl().autograd->grad_fn;
  if (!start) {  // backward on a leaf: its gradient is the upstream itself
    accumulate_leaf(root.impl(), grad);
    return;
  }

  // Iterative DFS post-order gives a topological order (inputs after consumers once reversed).
  std::vector<Node*> order;
  std::unordered_set<Node*> visited;
  std::vector<std::pair<Node*, size_t>> stack{{start.get(), 0}};
  visited.insert(start.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      Node* child = node->inputs[next++].node.get();
      if (child && visited.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }

  std::unordered_map<Node*, Tensor> grads;
  grads[start.get()] = grad;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = *it;
    auto found = grads.find(node);
    if (found == grads.end()) continue;  // no gradient flowed here
    Tensor node_grad = std::move(found->second);
    grads.erase(found);
    MMS_CHECK(!node->released && (node->backward || node->folding_backward), "backward: the graph through '", node->op,
              "' was already freed by an earlier backward(); call backward(grad, "
              "/*retain_graph=*/true) the first time to go through it twice");
    check_gradient(*node, node_grad);
    std::vector<bool> needs(node->inputs.size());
    for (size_t i = 0; i < needs.size(); ++i) needs[i] = node->inputs[i].active();
    std::vector<Tensor> input_grads;
    std::vector<bool> folded(node->inputs.size(), false);
    {
      NoGradGuard no_grad;  // formulas use raw ops; make sure nothing records
      if (node->folding_backward) {
        std::vector<Tensor> partials(node->inputs.size());
        for (size_t i = 0; i < partials.size(); ++i) {
          const Edge& edge = node->inputs[i];
          if (!needs[i] || !edge.node) continue;
          auto partial = grads.find(edge.node.get());
          if (partial != grads.end()) partials[i] = partial->second;
        }
        FoldedGrads result = node->folding_backward(node_grad, needs, partials);
        MMS_CHECK(result.folded.size() == result.grads.size(), "backward: ", node->op, " returned ",
                  result.folded.size(), " folded flags for ", result.grads.size(), " gradients");
        for (size_t i = 0; i < result.folded.size() && i < partials.size(); ++i)
          MMS_CHECK(!result.folded[i] || partials[i].defined(), "backward: ", node->op, " folded input ", i,
                    "'s partial gradient, but it had none");
        input_grads = std::move(result.grads);
        folded = std::move(result.folded);
      } else {
        input_grads = node->backward(node_grad, needs);
      }
    }
    MMS_CHECK(input_grads.size() == node->inputs.size(), "backward: ", node->op, " returned ",
              input_grads.size(), " gradients for ", node->inputs.size(), " inputs");
    for (size_t i = 0; i < input_grads.size(); ++i) {
      const Edge& edge = node->inputs[i];
      if (!edge.active() || !input_grads[i].defined()) continue;
      if (edge.node) {
        Tensor& sum = grads[edge.node.get()];
        sum = folded[i] ? input_grads[i] : accumulate(sum, input_grads[i]);
      } else {
        accumulate_leaf(*edge.leaf, input_grads[i]);
      }
    }
    profile_mark_op(node->op.c_str(), "backward");
    if (!retain_graph) {
      node->backward = nullptr;  // frees the saved tensors
      node->folding_backward = nullptr;
      node->released = true;
    }
  }
}

}  // namespace mms
