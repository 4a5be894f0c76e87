// gemm_lt.cu: the linear layer y = act(x W^T + b) as one cuBLASLt matmul whose epilogue
// adds the bias (and applies the tanh GELU). What it computes, the shapes and why the
// epilogue pays: cuda/gemm_lt.h.
//
// Row-major trick (as in gemm.cu): cuBLASLt is column-major, and a row-major [r, c]
// matrix read column-major is its [c, r] transpose. So we ask for y^T = W x^T:
//   A = W:  stored [n, k] row-major = [k, n] column-major (ld k), transposed -> [n, k]
//   B = x:  stored [m, k] row-major = [k, m] column-major (ld k), as is      -> [k, m]
//   D = y^T: [n, m] column-major (ld n)                                     = y [m, n] row-major
// The bias runs along D's rows, which is what CUBLASLT_EPILOGUE_BIAS broadcasts (one
// value per row of D, i.e. per output feature). The GELU input matrix h ("aux") has D's
// layout, so it is row-major [m, n] too.
//
// Planning: a matmul descriptor, the three layouts and the algorithm (from
// cublasLtMatmulAlgoGetHeuristic) are made once per (precision, epilogue, m, n, k,
// pointer alignments) and cached; a call only sets the bias/aux pointers and queues the
// matmul. The heuristic's answer depends on alignment (it excludes kernels that need
// 16-byte vectors when a pointer is less aligned), so alignment is part of the key. One
// handle and a 32 MiB workspace from the pool (cuda/memory.h) serve the process, so no
// cudaMalloc happens inside a training step.
//
// Floor: the GEMM's, 2*m*n*k FLOPs over the FP32, TF32 or bf16 tensor-core peak.
#include <cublasLt.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "cuda/check.h"
#include "cuda/gemm.h"
#include "cuda/gemm_lt.h"
#include "cuda/memory.h"

// cuBLASLt reports through cublasStatus_t, so the cuBLAS check (and its status names)
// applies unchanged; the separate name says which library a failing line called.
#define MMS_CUBLASLT_CHECK(call) MMS_CUBLAS_CHECK(call)

namespace mms::cuda {

namespace {

// -1: not read yet; 0 / 1: off / on.
std::atomic<int> g_enabled{-1};

// BFloat16: bf16 x and W, float32 bias and y. BFloat16Out: everything bf16 (autocast's
// bf16 activations: the bias added to the float32 accumulator, the sum rounded once).
enum class Precision : int { Float32, TF32, BFloat16, BFloat16Out };

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // NVIDIA's suggestion for Hopper

struct LtContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

LtContext& context() {
  static LtContext the_context = [] {
    LtContext created;
    MMS_CUBLASLT_CHECK(cublasLtCreate(&created.handle));
    created.workspace = pool_allocate(kWorkspaceBytes);
    return created;
  }();
  return the_context;
}

// The largest power of two (up to 256, cuBLASLt's default requirement) dividing the
// address; 256 for a null pointer (nothing to read).
uint32_t alignment_of(const void* pointer) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(pointer);
  if (address == 0) return 256;
  const uintptr_t lowest_bit = address & (~address + 1);
  return uint32_t(lowest_bit < 256 ? lowest_bit : 256);
}

struct PlanKey {
  Precision precision;
  LtEpilogue epilogue;
  bool with_pre_activation;
  int64_t m, n, k;
  uint32_t align_x, align_weight, align_y, align_bias, align_pre_activation;

  auto tied() const {
    return std::tie(precision, epilogue, with_pre_activation, m, n, k, align_x, align_weight, align_y,
                    align_bias, align_pre_activation);
  }
  bool operator<(const PlanKey& other) const { return tied() < other.tied(); }
};

struct Plan {
  bool supported = false;  // false: the heuristic found no algorithm (callers fall back)
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layout_weight = nullptr, layout_x = nullptr, layout_y = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

// Plans live for the process (like the handle): a fine-tune sees a few dozen shapes.
std::mutex g_plans_mutex;
std::map<PlanKey, Plan> g_plans;

cublasLtEpilogue_t epilogue_of(const PlanKey& key) {
  if (key.epilogue == LtEpilogue::Bias) return CUBLASLT_EPILOGUE_BIAS;
  return key.with_pre_activation ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
}

template <typename T>
void set_desc_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  MMS_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}

template <typename T>
void set_preference(cublasLtMatmulPreference_t preference, cublasLtMatmulPreferenceAttributes_t attribute,
                    const T& value) {
  MMS_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
}

// The pointers the epilogue reads or writes. Set on every call (the plan is shared by
// all calls of its key); the heuristic also looks at their values for alignment.
void set_epilogue_pointers(const Plan& plan, const void* bias, void* pre_activation) {
  set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  if (pre_activation != nullptr)
    set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, pre_activation);
}

Plan make_plan(const PlanKey& key, const void* bias, void* pre_activation) {
  Plan plan;
  const cublasComputeType_t compute =
      key.precision == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const bool bf16_inputs = key.precision == Precision::BFloat16 || key.precision == Precision::BFloat16Out;
  const cudaDataType_t input_type = bf16_inputs ? CUDA_R_16BF : CUDA_R_32F;
  const cudaDataType_t output_type = key.precision == Precision::BFloat16Out ? CUDA_R_16BF : CUDA_R_32F;
  MMS_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&plan.desc, compute, CUDA_R_32F));
  set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(CUBLAS_OP_T));
  set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(CUBLAS_OP_N));
  set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(epilogue_of(key)));
  // The bias and the GELU input matrix take D's type by default: float32, or bf16 for
  // BFloat16Out, which is what we pass (so neither type is set explicitly).
  if (key.with_pre_activation)
    set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t(key.n));
  set_epilogue_pointers(plan, bias, pre_activation);
  // Column-major layouts (rows, cols, leading dimension) of W, x and y^T: see the top.
  MMS_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.layout_weight, input_type, uint64_t(key.k),
                                                uint64_t(key.n), int64_t(key.k)));
  MMS_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.layout_x, input_type, uint64_t(key.k),
                                                uint64_t(key.m), int64_t(key.k)));
  MMS_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.layout_y, output_type, uint64_t(key.n),
                                                uint64_t(key.m), int64_t(key.n)));

  cublasLtMatmulPreference_t preference = nullptr;
  MMS_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  set_preference(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kWorkspaceBytes));
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_weight);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y);
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(context().handle, plan.desc, plan.layout_weight, plan.layout_x, plan.layout_y,
                                     plan.layout_y, preference, 1, &result, &returned);
  MMS_CUBLASLT_CHECK(cublasLtMatmulPreferenceDestroy(preference));
  // NOT_SUPPORTED (or no result) means "no kernel for this combination": fall back.
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) MMS_CUBLASLT_CHECK(status);
  plan.supported = status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan.supported) plan.algo = result.algo;
  return plan;
}

bool linear_lt(Precision precision, LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const void* x,
               const void* weight, const void* bias, void* y, void* pre_activation, cudaStream_t stream) {
  if (m <= 0 || n <= 0 || k <= 0) return false;
  MMS_CUDA_REQUIRE(x != nullptr && weight != nullptr && bias != nullptr && y != nullptr,
                   "linear_lt: x, weight, bias and y are required");
  MMS_CUDA_REQUIRE(pre_activation == nullptr || epilogue == LtEpilogue::GeluTanhBias,
                   "linear_lt: pre_activation is only written by the GELU epilogue");
  MMS_CUDA_REQUIRE(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX, "linear_lt: a dimension exceeds 32-bit sizes");
  // cuBLASLt wants the GELU input matrix's leading dimension (n) divisible by 8.
  if (pre_activation != nullptr && n % 8 != 0) return false;

  const PlanKey key{precision, epilogue, pre_activation != nullptr, m, n, k, alignment_of(x), alignment_of(weight),
                    alignment_of(y), alignment_of(bias), alignment_of(pre_activation)};
  const float alpha = 1.0f, beta = 0.0f;  // beta = 0: C is never read
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  auto found = g_plans.find(key);
  if (found == g_plans.end()) found = g_plans.emplace(key, make_plan(key, bias, pre_activation)).first;
  const Plan& plan = found->second;
  if (!plan.supported) return false;
  set_epilogue_pointers(plan, bias, pre_activation);
  LtContext& lt = context();
  MMS_CUBLASLT_CHECK(cublasLtMatmul(lt.handle, plan.desc, &alpha, weight, plan.layout_weight, x, plan.layout_x, &beta,
                                    y, plan.layout_y, y, plan.layout_y, &plan.algo, lt.workspace, kWorkspaceBytes,
                                    stream));
  MMS_CUDA_LAUNCH_CHECK();
  return true;
}

}  // namespace

bool cublaslt_enabled() {
  int enabled = g_enabled.load(std::memory_order_relaxed);
  if (enabled < 0) {
    const char* env = std::getenv("MMS_CUBLASLT");
    enabled = env != nullptr && std::strcmp(env, "0") == 0 ? 0 : 1;
    g_enabled.store(enabled, std::memory_order_relaxed);
  }
  return enabled == 1;
}

void set_cublaslt_enabled(bool enabled) { g_enabled.store(enabled ? 1 : 0, std::memory_order_relaxed); }

bool linear_lt_f32(LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const float* x, const float* weight,
                   const float* bias, float* y, float* pre_activation, cudaStream_t stream) {
  const Precision precision = tf32_enabled() ? Precision::TF32 : Precision::Float32;
  return linear_lt(precision, epilogue, m, n, k, x, weight, bias, y, pre_activation, stream);
}

bool linear_lt_bf16_f32(LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const uint16_t* x,
                        const uint16_t* weight, const float* bias, float* y, float* pre_activation,
                        cudaStream_t stream) {
  return linear_lt(Precision::BFloat16, epilogue, m, n, k, x, weight, bias, y, pre_activation, stream);
}

bool linear_lt_bf16(LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* weight,
                    const uint16_t* bias, uint16_t* y, uint16_t* pre_activation, cudaStream_t stream) {
  return linear_lt(Precision::BFloat16Out, epilogue, m, n, k, x, weight, bias, y, pre_activation, stream);
}

}  // namespace mms::cuda
