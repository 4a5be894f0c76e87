// Batched GEMM: out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b], through Eigen.
// Also the mixed-precision forms (a, b bfloat16, out float32 or bfloat16), see bf16_operands.
//
// This file checks the operands, decides how to thread, and picks the build: the widest
// of AVX-512 (float32: our kernel, sgemm_avx512.cpp, for the large products; else Eigen's
// AVX-512 build, gemm_avx512.cpp), AVX2+FMA (gemm_avx2.cpp) and the baseline Eigen
// compiled here that was compiled in and that the CPU runs (MMS_CPU_GEMM=avx512-eigen,
// avx2 or baseline caps it). The Eigen loop itself is tensor/cpu/gemm_eigen.inl.
// Eigen never threads a GEMM itself: gemm_eigen.inl threads at the bmm level (see there).
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/gemm_kernel.h"

namespace mms::cpu {

namespace gemm::portable {
#include "tensor/cpu/gemm_eigen.inl"
}  // namespace gemm::portable

namespace {

// Below this many multiply-adds in one bmm call (~50 us of single-core work at the
// AVX2 build's ~90 GFLOP/s per core) a parallel region costs more than it saves: a few
// us of fork/join on an idle machine, up to a scheduler time slice on a loaded one.
constexpr int64_t kThreadedGemmMacs = int64_t(1) << 21;

// Avx512: our float32 kernel where it takes the shape, Eigen's AVX-512 build otherwise
// (and for float64); Avx512Eigen: Eigen's build only.
enum class GemmBuild { Baseline, Avx2, Avx512Eigen, Avx512 };

// The widest build that is compiled in and that this CPU runs, capped by MMS_CPU_GEMM
// (baseline, avx2 or avx512-eigen: to compare like with like in bench/cpu_ops, or to
// rule a build out when chasing a numerical difference). Chosen once per process.
GemmBuild choose_build() {
  const char* cap = std::getenv("MMS_CPU_GEMM");
  const bool only_baseline = cap && std::strcmp(cap, "baseline") == 0;
  const bool at_most_avx2 = cap && std::strcmp(cap, "avx2") == 0;
  const bool only_eigen = cap && std::strcmp(cap, "avx512-eigen") == 0;
  MMS_CHECK(!cap || only_baseline || at_most_avx2 || only_eigen || *cap == '\0', "MMS_CPU_GEMM=", cap,
            ": expected baseline, avx2 or avx512-eigen (or unset for the widest build this CPU runs)");
  if (only_baseline) return GemmBuild::Baseline;
  if (!at_most_avx2 && gemm::avx512::compiled() && cpu_has_avx512()) {
    return !only_eigen && gemm::avx512_sgemm::compiled() ? GemmBuild::Avx512 : GemmBuild::Avx512Eigen;
  }
  if (gemm::avx2::compiled() && cpu_has_avx2_fma()) return GemmBuild::Avx2;
  return GemmBuild::Baseline;
}

GemmBuild build_in_use() {
  static const GemmBuild build = choose_build();
  return build;
}

// How many threads a GEMM of `macs` multiply-adds gets: 1 below kThreadedGemmMacs, else
// up to one per kThreadedGemmMacs (1 inside a pool part).
int gemm_threads(int64_t macs) {
  const int threads = parallel_threads();
  if (macs < kThreadedGemmMacs || threads <= 1) return 1;
  return static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, macs / kThreadedGemmMacs)));
}

// ours = false keeps a product on Eigen's build even where our kernel would take it:
// gemm::serial's callers (attention's per-head products: 77 x 77 x 64 for the text
// tower qualifies) are too small for whole-panel packing to pay.
template <typename T>
void run_bmm(const T* a, const T* b, T* c, const gemm::GemmProblem& problem, T alpha, T beta, bool ours = true) {
  switch (build_in_use()) {
    case GemmBuild::Avx512:
      if constexpr (std::is_same_v<T, float>) {
        if (ours && gemm::avx512_sgemm::takes(problem)) {
          gemm::avx512_sgemm::bmm(a, b, c, problem, alpha, beta);
          break;
        }
      }
      gemm::avx512::bmm(a, b, c, problem, alpha, beta);
      break;
    case GemmBuild::Avx512Eigen: gemm::avx512::bmm(a, b, c, problem, alpha, beta); break;
    case GemmBuild::Avx2: gemm::avx2::bmm(a, b, c, problem, alpha, beta); break;
    case GemmBuild::Baseline: gemm::portable::bmm(a, b, c, problem, alpha, beta); break;
  }
}

// bf16 -> float32 of a whole contiguous operand: exact (a bf16 is the top half of a
// float32, so widening is a 16-bit shift), threaded when large.
std::vector<float> widen_bf16(const Tensor& t) {
  std::vector<float> wide(static_cast<size_t>(t.numel()));
  const BFloat16* src = t.data<BFloat16>();
  float* dst = wide.data();
  const int64_t n = t.numel();
  auto convert = [src, dst](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = static_cast<float>(src[i]);
  };
  const int threads = parallel_threads();
  if (n >= 4 * kParallelGrain && threads > 1) {
    parallel_ranges(n, threads, convert);
  } else {
    convert(0, n);
  }
  return wide;
}

}  // namespace

void gemm::serial(RowsAt<const float> a, RowsAt<const float> b, RowsAt<float> c, int64_t m, int64_t n, int64_t k,
                  bool trans_a, bool trans_b, float alpha, float beta) {
  run_bmm<float>(a.data, b.data, c.data, {1, m, n, k, 0, 0, trans_a, trans_b, 1, a.stride, b.stride, c.stride},
                 alpha, beta, /*ours=*/false);
}

void gemm::serial(RowsAt<const double> a, RowsAt<const double> b, RowsAt<double> c, int64_t m, int64_t n,
                  int64_t k, bool trans_a, bool trans_b, double alpha, double beta) {
  run_bmm<double>(a.data, b.data, c.data, {1, m, n, k, 0, 0, trans_a, trans_b, 1, a.stride, b.stride, c.stride},
                  alpha, beta);
}

const char* gemm::isa_in_use() {
  switch (build_in_use()) {
    case GemmBuild::Avx512: return "avx512";
    case GemmBuild::Avx512Eigen: return "avx512-eigen";
    case GemmBuild::Avx2: return "avx2+fma";
    case GemmBuild::Baseline: break;
  }
  return "baseline";
}

void CpuBackend::bmm(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b,
                     double alpha, double beta) {
  const char* op = "bmm";
  MMS_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3, op, ": operands must be 3-D, got ",
            shape_str(a.shape()), ", ", shape_str(b.shape()), " -> ", shape_str(out.shape()));
  check_contiguous(op, "a", a);
  check_contiguous(op, "b", b);
  check_contiguous(op, "out", out);
  // Mixed precision (autocast, autograd/autocast.h): bfloat16 operands, a float32 output,
  // or a bfloat16 one (autocast's bf16 activations: float32 accumulation, rounded once).
  const bool bf16_operands = a.dtype() == DType::BFloat16 && b.dtype() == DType::BFloat16 &&
                             (out.dtype() == DType::Float32 || out.dtype() == DType::BFloat16);
  MMS_CHECK(bf16_operands || (a.dtype() == b.dtype() && a.dtype() == out.dtype()), op,
            ": dtypes differ (", dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " -> ",
            dtype_name(out.dtype()), "); the mixed forms are bfloat16 x bfloat16 -> float32 or bfloat16");
  const int64_t m = out.size(1), n = out.size(2);
  const int64_t a_rows = trans_a ? a.size(2) : a.size(1), k = trans_a ? a.size(1) : a.size(2);
  const int64_t b_inner = trans_b ? b.size(2) : b.size(1), b_cols = trans_b ? b.size(1) : b.size(2);
  MMS_CHECK(a_rows == m && b_cols == n && b_inner == k, op, ": shapes ", shape_str(a.shape()),
            (trans_a ? "^T" : ""), " and ", shape_str(b.shape()), (trans_b ? "^T" : ""),
            " do not multiply into ", shape_str(out.shape()));
  const int64_t batches = out.size(0);
  MMS_CHECK((a.size(0) == batches || a.size(0) == 1) && (b.size(0) == batches || b.size(0) == 1),
            op, ": batch sizes ", a.size(0), " and ", b.size(0), " do not broadcast to ",
            batches);
  if (out.numel() == 0) return;

  gemm::GemmProblem problem{batches, m, n, k,
                            a.size(0) == 1 ? 0 : m * k,  // a batch of 1 broadcasts
                            b.size(0) == 1 ? 0 : k * n, trans_a, trans_b, 1};
  problem.threads = gemm_threads(batches * m * n * k);
  if (bf16_operands) {
    // The CPU has no bf16 multiply worth using, so the operands are widened to float32
    // (exactly) and the float32 GEMM runs on them: the result is the float32 GEMM of the
    // bf16-rounded inputs, with float32 accumulation, as a GPU's bf16 tensor cores give
    // (up to summation order). The widening is pure extra work (and a float32 copy of
    // both operands), so on the CPU bf16 is slower than float32; it exists so that
    // autocast runs, and is tested, on every device.
    // A bfloat16 output is accumulated in a float32 copy (holding out's values when beta
    // reads them) and rounded once at the end, as a GPU's epilogue rounds.
    const std::vector<float> wide_a = widen_bf16(a), wide_b = widen_bf16(b);
    const bool narrow_out = out.dtype() == DType::BFloat16;
    std::vector<float> wide_out;
    if (narrow_out) wide_out = beta != 0.0 ? widen_bf16(out) : std::vector<float>(static_cast<size_t>(out.numel()));
    float* pc = narrow_out ? wide_out.data() : out.data<float>();
    run_bmm<float>(wide_a.data(), wide_b.data(), pc, problem, float(alpha), float(beta));
    if (narrow_out) {
      BFloat16* dst = out.data<BFloat16>();
      for (int64_t i = 0; i < out.numel(); ++i) dst[i] = BFloat16(wide_out[static_cast<size_t>(i)]);
    }
    return;
  }
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = out.data<T>();
    run_bmm<T>(pa, pb, pc, problem, static_cast<T>(alpha), static_cast<T>(beta));
  });
}

// The bias epilogue in our AVX-512 kernel: the bias goes into the first depth block's
// stores, where the unfused path (tensor/ops/linalg.cpp) copies it into out in a pass of
// its own and the GEMM then reads it back (beta = 1). float32, where the kernel takes the
// shape; GELU epilogues and every other case return false (the caller's passes run).
bool CpuBackend::linear_epilogue(const Tensor& x, const Tensor& weight, const Tensor& bias, LinearEpilogue epilogue,
                                 Tensor& out, Tensor& pre_activation) {
  (void)pre_activation;
  if (epilogue != LinearEpilogue::Bias || build_in_use() != GemmBuild::Avx512) return false;
  for (const Tensor* t : {&x, &weight, &bias, static_cast<const Tensor*>(&out)})
    if (t->dtype() != DType::Float32 || !t->is_contiguous()) return false;
  MMS_CHECK(x.dim() == 2 && weight.dim() == 2 && out.dim() == 2 && bias.dim() == 1 && x.size(1) == weight.size(1) &&
                out.size(0) == x.size(0) && out.size(1) == weight.size(0) && bias.size(0) == weight.size(0),
            "linear_epilogue: x ", shape_str(x.shape()), ", weight ", shape_str(weight.shape()), ", bias ",
            shape_str(bias.shape()), " -> out ", shape_str(out.shape()), " do not make a linear layer");
  const int64_t m = x.size(0), n = weight.size(0), k = x.size(1);
  gemm::GemmProblem problem{1, m, n, k, 0, 0, false, true, gemm_threads(m * n * k)};
  if (!gemm::avx512_sgemm::takes(problem)) return false;
  gemm::avx512_sgemm::bmm(x.data<float>(), weight.data<float>(), out.data<float>(), problem, 1.0f, 0.0f,
                          bias.data<float>());
  return true;
}

}  // namespace mms::cpu
