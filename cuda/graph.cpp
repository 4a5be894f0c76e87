// CapturedGraph: stream capture, instantiation and replay (see cuda/graph.h).
#include "cuda/graph.h"

#include <exception>

#include "cuda/check.h"
#include "cuda/runtime.h"
#include "cuda/staging.h"

namespace mms::cuda {

namespace {
thread_local bool t_capturing = false;
}  // namespace

bool capturing() { return t_capturing; }

CapturedGraph::~CapturedGraph() {
  // Never throws (destructor): a failed destroy at exit is harmless.
  if (exec_ != nullptr && cudaGraphExecDestroy(exec_) != cudaSuccess) cudaGetLastError();
  if (graph_ != nullptr && cudaGraphDestroy(graph_) != cudaSuccess) cudaGetLastError();
}

void CapturedGraph::capture(const std::function<void()>& body, size_t upload_bytes) {
  MMS_CUDA_REQUIRE(exec_ == nullptr && graph_ == nullptr, "CapturedGraph: already captured");
  // Work queued before the capture must not become part of it, and the arena is
  // allocated (a call that may synchronise) before capturing starts.
  synchronize();
  begin_capture_uploads(upload_bytes);
  MMS_CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
  t_capturing = true;
  std::exception_ptr failure;
  try {
    body();
  } catch (...) {
    failure = std::current_exception();
  }
  t_capturing = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream(), &graph);
  upload_arena_ = end_capture_uploads();
  if (failure) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    std::rethrow_exception(failure);
  }
  MMS_CUDA_CHECK(ended);
  graph_ = graph;
  MMS_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &nodes_));
  MMS_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
}

void CapturedGraph::replay() {
  MMS_CUDA_REQUIRE(exec_ != nullptr, "CapturedGraph: replay before a successful capture");
  MMS_CUDA_CHECK(cudaGraphLaunch(exec_, stream()));
}

}  // namespace mms::cuda
