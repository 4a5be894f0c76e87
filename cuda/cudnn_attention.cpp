// cuDNN's fused attention through the cuDNN frontend's graph API (cuda/cudnn_attention.h).
//
// What cuDNN is asked for: one SDPA node (forward: Q, K, V -> O and the softmax stats;
// backward: Q, K, V, O, dO, stats -> dQ, dK, dV) with bf16 inputs and outputs and float32
// intermediates and accumulation. The frontend lowers it to cuDNN's flash-attention
// engine: tiles of K and V through shared memory, tensor-core MMAs for QK^T and PV, and
// an online softmax, as our flash kernel does on CUDA cores in float32. Building a graph
// (heuristics, plan compilation) takes milliseconds to seconds, so each configuration
// builds once and stays cached; a failed build is cached too, with its message.
//
// Without the frontend's headers at build time (MMS_WITH_CUDNN_FRONTEND undefined) the
// entry points report that, and the engine keeps to its own kernels.
#include "cuda/cudnn_attention.h"

#ifdef MMS_WITH_CUDNN_FRONTEND

#include <cudnn.h>

#include <cudnn_frontend.h>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "cuda/check.h"
#include "cuda/memory.h"

namespace mms::cuda {

namespace {

namespace fe = cudnn_frontend;
using TensorPtr = std::shared_ptr<fe::graph::Tensor_attributes>;

// The ids that tie a graph's tensors to the pointers of one execution.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kSeqLenQ, kSeqLenKv, kGradO, kGradQ, kGradK, kGradV };

struct GraphKey {
  bool backward, causal, padding;
  int device;
  int64_t batch, heads, query_len, key_len, head_dim;
  float scale;
  auto tied() const {
    return std::tie(backward, causal, padding, device, batch, heads, query_len, key_len, head_dim, scale);
  }
  bool operator<(const GraphKey& other) const { return tied() < other.tied(); }
};

struct CachedGraph {
  std::shared_ptr<fe::graph::Graph> graph;  // null when the build failed
  int64_t workspace_bytes = 0;
  std::string error;
};

std::mutex g_mutex;  // guards the handles and the graph cache

// cuDNN takes non-const pointers in its variant pack, inputs included.
void* writable(const void* pointer) { return const_cast<void*>(pointer); }

int current_device() {
  int device = 0;
  MMS_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

cudnnHandle_t handle_for(int device) {
  static std::map<int, cudnnHandle_t> handles;
  auto found = handles.find(device);
  if (found != handles.end()) return found->second;
  cudnnHandle_t handle = nullptr;
  const cudnnStatus_t status = cudnnCreate(&handle);
  if (status != CUDNN_STATUS_SUCCESS)
    report_cuda_error(__FILE__, __LINE__, "cudnnCreate(&handle)", cudnnGetErrorString(status));
  handles[device] = handle;
  return handle;
}

// [B, H, L, D] contiguous.
TensorPtr rows_tensor(fe::graph::Graph& graph, const char* name, int64_t uid, const GraphKey& key, int64_t length) {
  const int64_t h = key.heads, d = key.head_dim;
  return graph.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(uid)
                          .set_dim({key.batch, h, length, d})
                          .set_stride({h * length * d, length * d, d, 1}));
}

// The row statistics [B, H, Lq, 1] in float32: laid out as our lse [B, H, Lq].
void as_stats(fe::graph::Tensor_attributes& stats, const GraphKey& key) {
  stats.set_uid(kStats)
      .set_data_type(fe::DataType_t::FLOAT)
      .set_dim({key.batch, key.heads, key.query_len, 1})
      .set_stride({key.heads * key.query_len, key.query_len, 1, 1});
}

TensorPtr stats_input(fe::graph::Graph& graph, const GraphKey& key) {
  auto stats = graph.tensor(fe::graph::Tensor_attributes().set_name("stats"));
  as_stats(*stats, key);
  return stats;
}

TensorPtr lengths_tensor(fe::graph::Graph& graph, const char* name, int64_t uid, int64_t batch) {
  return graph.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(uid)
                          .set_dim({batch, 1, 1, 1})
                          .set_stride({1, 1, 1, 1})
                          .set_data_type(fe::DataType_t::INT32));
}

std::shared_ptr<fe::graph::Graph> new_graph() {
  auto graph = std::make_shared<fe::graph::Graph>();
  graph->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return graph;
}

// The masks and scale, set the same way on the forward's and the backward's attributes.
template <typename Attributes>
void set_masks(Attributes& attributes, fe::graph::Graph& graph, const GraphKey& key) {
  attributes.set_attn_scale(key.scale);
  if (key.causal) attributes.set_causal_mask(true);  // top-left: key j hidden from query i when j > i
  if (key.padding)
    attributes.set_padding_mask(true)
        .set_seq_len_q(lengths_tensor(graph, "seq_len_q", kSeqLenQ, key.batch))
        .set_seq_len_kv(lengths_tensor(graph, "seq_len_kv", kSeqLenKv, key.batch));
}

std::shared_ptr<fe::graph::Graph> forward_graph(const GraphKey& key) {
  auto graph = new_graph();
  auto q = rows_tensor(*graph, "q", kQ, key, key.query_len);
  auto k = rows_tensor(*graph, "k", kK, key, key.key_len);
  auto v = rows_tensor(*graph, "v", kV, key, key.key_len);
  auto attributes = fe::graph::SDPA_attributes().set_name("attention").set_generate_stats(true);
  set_masks(attributes, *graph, key);
  auto [o, stats] = graph->sdpa(q, k, v, attributes);
  const int64_t h = key.heads, lq = key.query_len, d = key.head_dim;
  o->set_output(true).set_uid(kO).set_dim({key.batch, h, lq, d}).set_stride({h * lq * d, lq * d, d, 1});
  stats->set_output(true);
  as_stats(*stats, key);
  return graph;
}

std::shared_ptr<fe::graph::Graph> backward_graph(const GraphKey& key) {
  auto graph = new_graph();
  auto q = rows_tensor(*graph, "q", kQ, key, key.query_len);
  auto k = rows_tensor(*graph, "k", kK, key, key.key_len);
  auto v = rows_tensor(*graph, "v", kV, key, key.key_len);
  auto o = rows_tensor(*graph, "o", kO, key, key.query_len);
  auto grad_o = rows_tensor(*graph, "grad_o", kGradO, key, key.query_len);
  auto stats = stats_input(*graph, key);
  auto attributes = fe::graph::SDPA_backward_attributes().set_name("attention_backward");
  set_masks(attributes, *graph, key);
  auto [grad_q, grad_k, grad_v] = graph->sdpa_backward(q, k, v, o, grad_o, stats, attributes);
  const int64_t h = key.heads, d = key.head_dim;
  auto output = [&](const TensorPtr& t, int64_t uid, int64_t length) {
    t->set_output(true).set_uid(uid).set_dim({key.batch, h, length, d}).set_stride({h * length * d, length * d, d, 1});
  };
  output(grad_q, kGradQ, key.query_len);
  output(grad_k, kGradK, key.key_len);
  output(grad_v, kGradV, key.key_len);
  return graph;
}

// The cached graph for `key`, built (validate, lower, pick and compile a plan) on first use.
const CachedGraph& graph_for(const GraphKey& key) {
  // Never destroyed: at exit cuDNN's own statics may be gone before ours, and destroying
  // a graph's descriptors then can crash (the handles are kept for the process too).
  static auto& cache = *new std::map<GraphKey, CachedGraph>;
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  CachedGraph entry;
  auto graph = key.backward ? backward_graph(key) : forward_graph(key);
  // Heuristic A first, then the fallback list (odd shapes such as Lq = 5, Lk = 9).
  fe::error_t status = graph->build(handle_for(key.device), {fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
  if (status.is_good()) status = graph->get_workspace_size(entry.workspace_bytes);
  if (status.is_good()) entry.graph = std::move(graph);
  else entry.error = "cuDNN " + std::string(key.backward ? "attention backward" : "attention") + " [" +
                     std::to_string(key.batch) + ", " + std::to_string(key.heads) + ", " +
                     std::to_string(key.query_len) + "/" + std::to_string(key.key_len) + ", " +
                     std::to_string(key.head_dim) + "]: " + status.get_message();
  // "No engine for this graph" is an answer for the key; a failure of the environment
  // (a CUDA or cuDNN call, memory, NVRTC, the handle) may not recur, so it is reported
  // but not cached: the next call builds again.
  const fe::error_code_t code = status.get_code();
  const bool environmental = code == fe::error_code_t::CUDA_API_FAILED ||
                             code == fe::error_code_t::CUDNN_BACKEND_API_FAILED ||
                             code == fe::error_code_t::NVRTC_COMPILATION_FAILED ||
                             code == fe::error_code_t::HANDLE_ERROR || code == fe::error_code_t::INVALID_CUDA_DEVICE;
  if (environmental) {
    static CachedGraph last_failure;  // read under g_mutex by the caller, like the cache
    last_failure = std::move(entry);
    return last_failure;
  }
  return cache.emplace(key, std::move(entry)).first->second;
}

GraphKey key_of(bool backward, const int32_t* seq_len_q, const int32_t* seq_len_kv, bool causal, float scale,
                const AttentionShape& shape) {
  return GraphKey{backward,          causal,       seq_len_q != nullptr && seq_len_kv != nullptr,
                  current_device(),  shape.batch, shape.heads, shape.query_len, shape.key_len,
                  shape.head_dim,    scale};
}

// Runs a built graph with these pointers; an execution failure (unlike a build that
// found no engine) is an error.
std::string execute(const GraphKey& key, std::unordered_map<int64_t, void*> pack, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const CachedGraph& entry = graph_for(key);
  if (!entry.graph) return entry.error;
  cudnnHandle_t handle = handle_for(key.device);
  const cudnnStatus_t set = cudnnSetStream(handle, stream);
  if (set != CUDNN_STATUS_SUCCESS) report_cuda_error(__FILE__, __LINE__, "cudnnSetStream", cudnnGetErrorString(set));
  ScratchBuffer workspace(static_cast<size_t>(entry.workspace_bytes));  // freed in stream order
  fe::error_t status = entry.graph->execute(handle, pack, workspace.data());
  if (!status.is_good()) report_cuda_error(__FILE__, __LINE__, "cudnn_frontend::graph::Graph::execute",
                                           status.get_message().c_str());
  return "";
}


}  // namespace

bool cudnn_attention_built() { return true; }

std::string cudnn_attention_forward(const void* q, const void* k, const void* v, const int32_t* seq_len_q,
                                    const int32_t* seq_len_kv, bool causal, float scale, void* out, float* stats,
                                    const AttentionShape& shape, cudaStream_t stream) {
  const GraphKey key = key_of(false, seq_len_q, seq_len_kv, causal, scale, shape);
  std::unordered_map<int64_t, void*> pack = {{kQ, writable(q)}, {kK, writable(k)}, {kV, writable(v)},
                                             {kO, out},         {kStats, stats}};
  if (key.padding) {
    pack[kSeqLenQ] = writable(seq_len_q);
    pack[kSeqLenKv] = writable(seq_len_kv);
  }
  std::string why = execute(key, std::move(pack), stream);
  if (why.empty()) MMS_CUDA_LAUNCH_CHECK();  // the profiler's mark; debug builds sync here
  return why;
}

std::string cudnn_attention_backward(const void* q, const void* k, const void* v, const void* out,
                                     const void* grad_out, const float* stats, const int32_t* seq_len_q,
                                     const int32_t* seq_len_kv, bool causal, float scale, void* grad_q,
                                     void* grad_k, void* grad_v, const AttentionShape& shape, cudaStream_t stream) {
  const GraphKey key = key_of(true, seq_len_q, seq_len_kv, causal, scale, shape);
  std::unordered_map<int64_t, void*> pack = {
      {kQ, writable(q)},          {kK, writable(k)},          {kV, writable(v)},
      {kO, writable(out)},        {kGradO, writable(grad_out)}, {kStats, writable(stats)},
      {kGradQ, grad_q},           {kGradK, grad_k},           {kGradV, grad_v}};
  if (key.padding) {
    pack[kSeqLenQ] = writable(seq_len_q);
    pack[kSeqLenKv] = writable(seq_len_kv);
  }
  std::string why = execute(key, std::move(pack), stream);
  if (why.empty()) MMS_CUDA_LAUNCH_CHECK();
  return why;
}

}  // namespace mms::cuda

#else  // no cuDNN frontend in this build

namespace mms::cuda {

namespace {
const char* kNotBuilt =
    "this build has no cuDNN fused attention (configure with cuDNN and the cuDNN frontend headers: "
    "tools/install_deps.sh installs them when nvcc is present)";
}

bool cudnn_attention_built() { return false; }

std::string cudnn_attention_forward(const void*, const void*, const void*, const int32_t*, const int32_t*, bool,
                                    float, void*, float*, const AttentionShape&, cudaStream_t) {
  return kNotBuilt;
}

std::string cudnn_attention_backward(const void*, const void*, const void*, const void*, const void*, const float*,
                                     const int32_t*, const int32_t*, bool, float, void*, void*, void*,
                                     const AttentionShape&, cudaStream_t) {
  return kNotBuilt;
}

}  // namespace mms::cuda

#endif
