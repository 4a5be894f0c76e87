// The backward graph: one Node per differentiable op call, edges to the Nodes (or
// leaf tensors) that produced its inputs. Small on purpose, micrograd-style: a Node
// is a closure holding the saved tensors and the derivative formula.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mms {

struct Node;

// Where the gradient of one input goes: to the Node that computed it, or straight
// into a leaf tensor's .grad. Both empty = that input needs no gradient.
struct Edge {
  std::shared_ptr<Node> node;
  std::shared_ptr<TensorImpl> leaf;
  bool active() const { return node != nullptr || leaf != nullptr; }
};

// grads of the op's inputs from the grad of its output; needs[i] says whether input i
// wants one (return an undefined Tensor otherwise).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output,
                                                     const std::vector<bool>& needs)>;

// A backward that may fold in the gradient an input already has. partials[i] is the
// sum of the gradients input i has received so far from its other consumers (undefined
// where none has arrived yet, or input i is a leaf). Returning folded[i] = true says
// grads[i] already includes partials[i]: the engine then stores it instead of adding.
// The partials must only be read (another consumer may still hold the same tensor).
// What it buys: where an input has two consumers (a pre-norm transformer's residual
// stream feeds both a layer norm and the next add), the second gradient is added in the
// kernel that computes it rather than by a separate add over the whole tensor.
struct FoldedGrads {
  std::vector<Tensor> grads;
  std::vector<bool> folded;
};
using FoldingBackwardFn = std::function<FoldedGrads(const Tensor& grad_output, const std::vector<bool>& needs,
                                                    const std::vector<Tensor>& partials)>;

struct Node {
  std::string op;              // for messages: "matmul", "layer_norm", ...
  std::vector<Edge> inputs;    // one per op input, in order
  Shape output_shape;          // the shape the incoming gradient must have
  DType output_dtype = DType::Float32;
  BackwardFn backward;         // reset after use unless the graph is retained
  FoldingBackwardFn folding_backward;  // instead of backward, for ops that fold partials
  bool released = false;
};

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;  // null for leaves
};

// Grad mode: ops record a graph only while it is enabled (thread-local, on by default).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when grad mode is on and some input requires a gradient.
bool needs_graph(const std::vector<Tensor>& inputs);

// Attaches a backward Node to `output` (if any input needs a gradient) and returns it.
// The closure must capture saved tensors through saved() so the graph never owns
// its own outputs (which would be a reference cycle).
Tensor record(const char* op, const Tensor& output, const std::vector<Tensor>& inputs,
              BackwardFn backward);
// The same with a backward that may fold in its inputs' partial gradients (FoldedGrads).
Tensor record_folding(const char* op, const Tensor& output, const std::vector<Tensor>& inputs,
                      FoldingBackwardFn backward);
// A handle to the same data with no autograd history: what closures capture.
Tensor saved(const Tensor& tensor);

// Runs reverse-mode accumulation from `root` with upstream gradient `grad`.
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

}  // namespace mms
