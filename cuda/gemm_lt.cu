// gemm_lt.cu: the linear layer y = act(x W^T + b) as one cuBLASLt matmul whose epilogue
// adds the bias (and applies the tanh GELU), and its weight gradient dW = dy^T x with the
// bias gradient summed in the epilogue. What they compute, the shapes and why the
// epilogues pay: cuda/gemm_lt.h.
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

// One cached plan's key. m, n, k are the linear layer's (rows, out_features,
// in_features) for every epilogue; the alignments are of cuBLASLt's A, B and D
// (gemm_form below says which tensor each is), the bias (or bias gradient) and the GELU
// input matrix ("aux").
struct PlanKey {
  Precision precision;
  LtEpilogue epilogue;
  bool with_pre_activation;
  int64_t m, n, k;
  uint32_t align_a, align_b, align_d, align_bias, align_aux;

  auto tied() const {
    return std::tie(precision, epilogue, with_pre_activation, m, n, k, align_a, align_b, align_d, align_bias,
                    align_aux);
  }
  bool operator<(const PlanKey& other) const { return tied() < other.tied(); }
};

struct Plan {
  bool supported = false;  // false: the heuristic found no algorithm (callers fall back)
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layout_a = nullptr, layout_b = nullptr, layout_d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

// Plans live for the process (like the handle): a fine-tune sees a few dozen shapes.
std::mutex g_plans_mutex;
std::map<PlanKey, Plan> g_plans;

cublasLtEpilogue_t epilogue_of(const PlanKey& key) {
  switch (key.epilogue) {
    case LtEpilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case LtEpilogue::GeluTanhBias:
      return key.with_pre_activation ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
    case LtEpilogue::BiasGradient: return CUBLASLT_EPILOGUE_BGRADB;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// A column-major matrix as cuBLASLt's layout takes it.
struct MatrixShape {
  uint64_t rows, cols;
  int64_t ld;
};

// The two GEMMs in cuBLASLt's column-major terms (the row-major trick at the top):
//  forward   D = y^T [n, m] = op(A) B:   A = W  ([k, n] ld k, transposed), B = x ([k, m] ld k)
//  gradient  D = dW^T [k, n] = A op(B):  A = x  ([k, m] ld k), B = dy ([n, m] ld n, transposed)
// In the gradient the GEMM's reduction runs over the m rows, and BGRADB sums B (dy)
// over that same reduction into one value per column of D, i.e. per output feature.
struct GemmForm {
  cublasOperation_t trans_a, trans_b;
  MatrixShape a, b, d;
};

GemmForm gemm_form(const PlanKey& key) {
  const uint64_t m = uint64_t(key.m), n = uint64_t(key.n), k = uint64_t(key.k);
  if (key.epilogue == LtEpilogue::BiasGradient)
    return {CUBLAS_OP_N, CUBLAS_OP_T, {k, m, key.k}, {n, m, key.n}, {k, n, key.k}};
  return {CUBLAS_OP_T, CUBLAS_OP_N, {k, n, key.k}, {k, m, key.k}, {n, m, key.n}};
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

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, const MatrixShape& shape) {
  cublasLtMatrixLayout_t layout = nullptr;
  MMS_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&layout, type, shape.rows, shape.cols, shape.ld));
  return layout;
}

Plan make_plan(const PlanKey& key, const void* bias, void* pre_activation) {
  Plan plan;
  const cublasComputeType_t compute =
      key.precision == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const bool bf16_inputs = key.precision == Precision::BFloat16 || key.precision == Precision::BFloat16Out;
  const cudaDataType_t input_type = bf16_inputs ? CUDA_R_16BF : CUDA_R_32F;
  const cudaDataType_t output_type = key.precision == Precision::BFloat16Out ? CUDA_R_16BF : CUDA_R_32F;
  const GemmForm form = gemm_form(key);
  MMS_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&plan.desc, compute, CUDA_R_32F));
  set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(form.trans_a));
  set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(form.trans_b));
  set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(epilogue_of(key)));
  // The bias and the GELU input matrix take D's type by default: float32, or bf16 for
  // BFloat16Out, which is what we pass. The bias gradient is float32 whatever D is; said
  // explicitly, so that a bf16-output gradient GEMM could never round it silently.
  if (key.epilogue == LtEpilogue::BiasGradient)
    set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(CUDA_R_32F));
  if (key.with_pre_activation)
    set_desc_attribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t(key.n));
  set_epilogue_pointers(plan, bias, pre_activation);
  plan.layout_a = make_layout(input_type, form.a);
  plan.layout_b = make_layout(input_type, form.b);
  plan.layout_d = make_layout(output_type, form.d);

  cublasLtMatmulPreference_t preference = nullptr;
  MMS_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  set_preference(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kWorkspaceBytes));
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_d);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_d);
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(context().handle, plan.desc, plan.layout_a, plan.layout_b, plan.layout_d,
                                     plan.layout_d, preference, 1, &result, &returned);
  MMS_CUBLASLT_CHECK(cublasLtMatmulPreferenceDestroy(preference));
  // NOT_SUPPORTED (or no result) means "no kernel for this combination": fall back.
  // Some cuBLASLt versions answer an epilogue they lack for a layout with INVALID_VALUE
  // instead; for the bias gradient, whose support NVIDIA does not tabulate, that is
  // read the same way (the forward epilogues are documented, so there it stays an error).
  const bool no_kernel = status == CUBLAS_STATUS_NOT_SUPPORTED ||
                         (status == CUBLAS_STATUS_INVALID_VALUE && key.epilogue == LtEpilogue::BiasGradient);
  if (!no_kernel) MMS_CUBLASLT_CHECK(status);
  plan.supported = status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan.supported) plan.algo = result.algo;
  return plan;
}

// Queues D = op(A) op(B) with the key's epilogue, planning on the first call of a key.
// False, with nothing queued, where cuBLASLt has no kernel for it: the heuristic found
// none, or the matmul itself answers NOT_SUPPORTED (the plan is then marked so).
bool run_lt(PlanKey key, const void* a, const void* b, void* d, const void* bias, void* aux, cudaStream_t stream) {
  key.align_a = alignment_of(a);
  key.align_b = alignment_of(b);
  key.align_d = alignment_of(d);
  key.align_bias = alignment_of(bias);
  key.align_aux = alignment_of(aux);
  const float alpha = 1.0f, beta = 0.0f;  // beta = 0: C is never read
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  auto found = g_plans.find(key);
  if (found == g_plans.end()) found = g_plans.emplace(key, make_plan(key, bias, aux)).first;
  Plan& plan = found->second;
  if (!plan.supported) return false;
  set_epilogue_pointers(plan, bias, aux);
  LtContext& lt = context();
  const cublasStatus_t status = cublasLtMatmul(lt.handle, plan.desc, &alpha, a, plan.layout_a, b, plan.layout_b,
                                               &beta, d, plan.layout_d, d, plan.layout_d, &plan.algo,
                                               lt.workspace, kWorkspaceBytes, stream);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) {
    plan.supported = false;
    return false;
  }
  MMS_CUBLASLT_CHECK(status);
  MMS_CUDA_LAUNCH_CHECK();
  return true;
}

// False for an empty product (nothing to fuse); 32-bit sizes required, as cuBLASLt's.
bool dimensions_fit(int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0) return false;
  MMS_CUDA_REQUIRE(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX, "cuBLASLt linear: a dimension exceeds 32-bit sizes");
  return true;
}

bool linear_lt(Precision precision, LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const void* x,
               const void* weight, const void* bias, void* y, void* pre_activation, cudaStream_t stream) {
  if (!dimensions_fit(m, n, k)) return false;
  MMS_CUDA_REQUIRE(x != nullptr && weight != nullptr && bias != nullptr && y != nullptr,
                   "linear_lt: x, weight, bias and y are required");
  MMS_CUDA_REQUIRE(epilogue != LtEpilogue::BiasGradient, "linear_lt: the bias gradient is linear_weight_grad_lt's");
  MMS_CUDA_REQUIRE(pre_activation == nullptr || epilogue == LtEpilogue::GeluTanhBias,
                   "linear_lt: pre_activation is only written by the GELU epilogue");
  // cuBLASLt wants the GELU input matrix's leading dimension (n) divisible by 8.
  if (pre_activation != nullptr && n % 8 != 0) return false;
  const PlanKey key{precision, epilogue, pre_activation != nullptr, m, n, k, 0, 0, 0, 0, 0};
  return run_lt(key, weight, x, y, bias, pre_activation, stream);
}

bool linear_weight_grad_lt(Precision precision, int64_t m, int64_t n, int64_t k, const void* grad_out,
                           const void* x, float* grad_weight, float* grad_bias, cudaStream_t stream) {
  if (!dimensions_fit(m, n, k)) return false;
  MMS_CUDA_REQUIRE(grad_out != nullptr && x != nullptr && grad_weight != nullptr && grad_bias != nullptr,
                   "linear_weight_grad_lt: grad_out, x, grad_weight and grad_bias are required");
  const PlanKey key{precision, LtEpilogue::BiasGradient, false, m, n, k, 0, 0, 0, 0, 0};
  return run_lt(key, x, grad_out, grad_weight, grad_bias, nullptr, stream);
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

bool linear_weight_grad_lt_f32(int64_t m, int64_t n, int64_t k, const float* grad_out, const float* x,
                               float* grad_weight, float* grad_bias, cudaStream_t stream) {
  const Precision precision = tf32_enabled() ? Precision::TF32 : Precision::Float32;
  return linear_weight_grad_lt(precision, m, n, k, grad_out, x, grad_weight, grad_bias, stream);
}

bool linear_weight_grad_lt_bf16(int64_t m, int64_t n, int64_t k, const uint16_t* grad_out, const uint16_t* x,
                                float* grad_weight, float* grad_bias, cudaStream_t stream) {
  return linear_weight_grad_lt(Precision::BFloat16, m, n, k, grad_out, x, grad_weight, grad_bias, stream);
}

}  // namespace mms::cuda
