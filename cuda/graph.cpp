// CapturedGraph: stream capture, instantiation and replay (see cuda/graph.h).
#include "cuda/graph.h"

#include <exception>
#include <string>

#include "cuda/check.h"
#include "cuda/memory.h"
#include "cuda/runtime.h"
#include "cuda/staging.h"

namespace mms::cuda {

namespace {
thread_local bool t_capturing = false;
}  // namespace

bool capturing() { return t_capturing; }

CapturedGraph::~CapturedGraph() {
  // Never throws (destructor): a failed call at exit is harmless. A replay may still be
  // running and reading the upload arena: wait for it before the arena goes.
  if (exec_ != nullptr && cudaStreamSynchronize(stream()) != cudaSuccess) cudaGetLastError();
  if (exec_ != nullptr && cudaGraphExecDestroy(exec_) != cudaSuccess) cudaGetLastError();
  if (graph_ != nullptr && cudaGraphDestroy(graph_) != cudaSuccess) cudaGetLastError();
  // Graph memory stays cached by the driver after the graph is gone; give it back so a
  // next graph (another batch size) does not stack on top of it.
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGraphMemTrim(device) != cudaSuccess) cudaGetLastError();
}

namespace {
// Ends the capture bookkeeping on every exit path of capture(), so a failure never
// leaves uploads routed to the arena or the pool counting captured allocations.
struct CaptureScope {
  bool* flag;
  explicit CaptureScope(bool* f) : flag(f) { *flag = true; }
  ~CaptureScope() { *flag = false; }
};
}  // namespace

void CapturedGraph::capture(const std::function<void()>& body, size_t upload_bytes) {
  MMS_CUDA_REQUIRE(exec_ == nullptr && graph_ == nullptr, "CapturedGraph: already captured");
  // Work queued before the capture must not become part of it, and the arena is
  // allocated (a call that may synchronise) before capturing starts.
  synchronize();
  begin_capture_uploads(upload_bytes);
  pool_begin_capture();
  std::exception_ptr failure;
  cudaGraph_t graph = nullptr;
  cudaError_t begun = cudaSuccess, ended = cudaSuccess;
  {
    begun = cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal);
    if (begun == cudaSuccess) {
      CaptureScope scope(&t_capturing);
      try {
        body();
      } catch (...) {
        failure = std::current_exception();
      }
      ended = cudaStreamEndCapture(stream(), &graph);
    }
  }
  upload_arena_ = end_capture_uploads();
  const std::string pool_problems = pool_end_capture();
  if (failure || begun != cudaSuccess || ended != cudaSuccess || !pool_problems.empty()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    upload_arena_.reset();
    if (failure) std::rethrow_exception(failure);
    MMS_CUDA_CHECK(begun);
    MMS_CUDA_CHECK(ended);
    report_cuda_error(__FILE__, __LINE__, "CapturedGraph::capture", ("graph capture: " + pool_problems).c_str());
  }
  graph_ = graph;
  MMS_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &nodes_));
  MMS_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  // Map the graph's memory and upload it now, so the first timed replay is a replay.
  MMS_CUDA_CHECK(cudaGraphUpload(exec_, stream()));
}

size_t graph_memory_high_bytes() {
  int device = 0;
  MMS_CUDA_CHECK(cudaGetDevice(&device));
  unsigned long long high = 0;
  MMS_CUDA_CHECK(cudaDeviceGetGraphMemAttribute(device, cudaGraphMemAttrUsedMemHigh, &high));
  return static_cast<size_t>(high);
}

void CapturedGraph::replay() {
  MMS_CUDA_REQUIRE(exec_ != nullptr, "CapturedGraph: replay before a successful capture");
  MMS_CUDA_CHECK(cudaGraphLaunch(exec_, stream()));
}

}  // namespace mms::cuda
