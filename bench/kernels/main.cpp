// bench/kernels: every CUDA kernel (and its naive sibling) at ViT-B/32 / CLIP text shapes.
// For each: validate against the CPU reference first (same inputs, DESIGN.md tolerance),
// then time with CUDA events and report microseconds, GB/s or TFLOP/s, and the fraction
// of this card's measured peak (device-to-device memcpy bandwidth; a large cuBLAS SGEMM
// and TF32 GEMM). Without a GPU (or without CUDA in the build) it says so and exits 0.
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

#ifdef MMS_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/adamw.h"
#include "cuda/attention.h"
#include "cuda/cudnn_attention.h"
#include "cuda/copy.h"
#include "cuda/dropout.h"
#include "cuda/elementwise.h"
#include "cuda/gemm.h"
#include "cuda/gemm_lt.h"
#include "cuda/indexing.h"
#include "cuda/layernorm.h"
#include "cuda/listmle.h"
#include "cuda/memory.h"
#include "cuda/random.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "cuda/softmax.h"
#endif

using namespace mms;

#ifndef MMS_WITH_CUDA
int main() {
  std::printf("bench/kernels: skipped: this build has no CUDA (configure with -DMMS_CUDA=ON)\n");
  return 0;
}
#else

namespace {

const Device kGpu = Device::cuda(0);
int g_failures = 0;

double relative_error(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>();
  const std::vector<double> r = ref.to(Device::cpu()).to_vector<double>();
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(g[i]) || std::isnan(r[i])) return INFINITY;
    if (std::isinf(g[i]) || std::isinf(r[i])) {
      if (g[i] != r[i]) return INFINITY;
      continue;
    }
    max_ref = std::max(max_ref, std::abs(r[i]));
    max_diff = std::max(max_diff, std::abs(g[i] - r[i]));
  }
  return max_ref == 0.0 ? max_diff : max_diff / max_ref;
}

bool validate(const char* what, const Tensor& got, const Tensor& ref, double tolerance = 1e-4) {
  const double error = relative_error(got, ref);
  const bool ok = error <= tolerance;
  if (!ok) ++g_failures;
  std::printf("  check %-34s rel.err %.2e %s\n", what, error, ok ? "ok" : "FAILED");
  return ok;
}

// Mean microseconds per call over enough repetitions to fill ~20 ms.
double time_us(const std::function<void()>& body) {
  body();  // warm-up (and first-use allocations)
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, cuda::stream());
  body();
  cudaEventRecord(stop, cuda::stream());
  cudaEventSynchronize(stop);
  float one_ms = 0.0f;
  cudaEventElapsedTime(&one_ms, start, stop);
  const int reps = std::max(3, std::min(1000, int(20.0 / std::max(one_ms, 0.001f))));
  cudaEventRecord(start, cuda::stream());
  for (int i = 0; i < reps; ++i) body();
  cudaEventRecord(stop, cuda::stream());
  cudaEventSynchronize(stop);
  float total_ms = 0.0f;
  cudaEventElapsedTime(&total_ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 1000.0 * total_ms / reps;
}

double g_peak_bandwidth = 0.0;  // bytes/s, device memcpy
double g_peak_fp32 = 0.0;       // FLOP/s, cuBLAS SGEMM
double g_peak_tf32 = 0.0;       // FLOP/s, cuBLAS TF32 GEMM
double g_peak_bf16 = 0.0;       // FLOP/s, cuBLAS bf16 GEMM (float32 accumulation)

void report_memory(const char* kernel, const char* variant, double us, double bytes) {
  const double gbs = bytes / (us * 1e-6) / 1e9;
  std::printf("  %-26s %-10s %10.2f us %9.1f GB/s %6.1f%% of memcpy peak\n", kernel, variant, us, gbs,
              100.0 * bytes / (us * 1e-6) / g_peak_bandwidth);
}

void report_compute(const char* kernel, const char* variant, double us, double flops, double peak) {
  const double tflops = flops / (us * 1e-6) / 1e12;
  std::printf("  %-26s %-10s %10.2f us %9.2f TFLOP/s %6.1f%% of %s peak\n", kernel, variant, us, tflops,
              100.0 * flops / (us * 1e-6) / peak,
              peak == g_peak_bf16 ? "BF16" : peak == g_peak_tf32 ? "TF32" : "FP32");
}

float* fp(const Tensor& t) { return static_cast<float*>(t.raw_data()); }
const float* cfp(const Tensor& t) { return static_cast<const float*>(t.raw_data()); }
Tensor randn_gpu(const Shape& shape, uint64_t seed) { return randn(shape, seed, 0, DType::Float32, kGpu); }
Tensor empty_gpu(const Shape& shape) { return empty(shape, DType::Float32, kGpu); }

void measure_peaks() {
  const size_t bytes = size_t(256) << 20;
  void* a = cuda::pool_allocate(bytes);
  void* b = cuda::pool_allocate(bytes);
  const double us = time_us([&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, cuda::stream()); });
  g_peak_bandwidth = 2.0 * double(bytes) / (us * 1e-6);  // read + write
  cuda::pool_free(a);
  cuda::pool_free(b);
  const int64_t n = 8192;
  Tensor x = randn_gpu({n, n}, 1), y = randn_gpu({n, n}, 2), z = empty_gpu({n, n});
  auto gemm = [&] {
    cuda::gemm_strided_batched_f32(false, false, 1, n, n, n, 1.0f, cfp(x), 0, cfp(y), 0, 0.0f, fp(z), 0, cuda::stream());
  };
  g_peak_fp32 = 2.0 * n * n * n / (time_us(gemm) * 1e-6);
  cuda::set_tf32_enabled(true);
  g_peak_tf32 = 2.0 * n * n * n / (time_us(gemm) * 1e-6);
  cuda::set_tf32_enabled(false);
  const Tensor xb = x.to(DType::BFloat16), yb = y.to(DType::BFloat16);
  g_peak_bf16 = 2.0 * n * n * n / (time_us([&] {
    cuda::gemm_strided_batched_bf16_f32(false, false, 1, n, n, n, 1.0f, static_cast<const uint16_t*>(xb.raw_data()), 0,
                                        static_cast<const uint16_t*>(yb.raw_data()), 0, 0.0f, fp(z), 0,
                                        cuda::stream());
  }) * 1e-6);
  std::printf("peak  memcpy %.0f GB/s   SGEMM %.1f TFLOP/s   TF32 GEMM %.1f TFLOP/s   BF16 GEMM %.1f TFLOP/s"
              "  (8192^3, measured)\n",
              g_peak_bandwidth / 1e9, g_peak_fp32 / 1e12, g_peak_tf32 / 1e12, g_peak_bf16 / 1e12);
}

cuda::StridedLayout contiguous_layout(int64_t n) {
  cuda::StridedLayout layout;
  layout.ndim = 1;
  layout.sizes[0] = n;
  layout.strides[0] = 1;
  return layout;
}

void bench_elementwise() {
  const int64_t tokens = 32 * 4 * 77, n = tokens * 3072;
  std::printf("kernel elementwise: quick_gelu / add on [%lld, 3072]\n", (long long)tokens);
  Tensor x = randn_gpu({tokens, 3072}, 10), y = randn_gpu({tokens, 3072}, 11), out = empty_gpu({tokens, 3072});
  validate("quick_gelu vs cpu", ops::unary(UnaryOp::QuickGelu, x), ops::unary(UnaryOp::QuickGelu, x.to(Device::cpu())));
  validate("add vs cpu", ops::add(x, y), ops::add(x.to(Device::cpu()), y.to(Device::cpu())));
  cuda::StridedLayout layouts[3] = {contiguous_layout(n), contiguous_layout(n), contiguous_layout(n)};
  report_memory("quick_gelu", "naive", time_us([&] {
    cuda::unary_f32_naive(cuda::UnaryKind::QuickGelu, cfp(x), fp(out), layouts, n, 0, 0, cuda::stream());
  }), 8.0 * n);
  report_memory("quick_gelu", "float4", time_us([&] {
    cuda::unary_f32(cuda::UnaryKind::QuickGelu, cfp(x), fp(out), layouts, n, 0, 0, cuda::stream());
  }), 8.0 * n);
  // quick_gelu's backward: grad_in from grad_out and x, 12 bytes per element
  Tensor g = randn_gpu({tokens, 3072}, 12);
  const Tensor ref_backward = ops::unary_backward(UnaryOp::QuickGelu, g.to(Device::cpu()), x.to(Device::cpu()));
  validate("quick_gelu backward vs cpu", ops::unary_backward(UnaryOp::QuickGelu, g, x), ref_backward);
  cuda::unary_backward_f32_naive(cuda::UnaryKind::QuickGelu, cfp(g), cfp(x), fp(out), layouts, n, 0, 0, cuda::stream());
  validate("quick_gelu backward naive vs cpu", out, ref_backward);
  report_memory("quick_gelu backward", "naive", time_us([&] {
    cuda::unary_backward_f32_naive(cuda::UnaryKind::QuickGelu, cfp(g), cfp(x), fp(out), layouts, n, 0, 0,
                                   cuda::stream());
  }), 12.0 * n);
  report_memory("quick_gelu backward", "float4", time_us([&] {
    cuda::unary_backward_f32(cuda::UnaryKind::QuickGelu, cfp(g), cfp(x), fp(out), layouts, n, 0, 0, cuda::stream());
  }), 12.0 * n);
  report_memory("add", "naive", time_us([&] {
    cuda::binary_f32_naive(cuda::BinaryKind::Add, cfp(x), cfp(y), fp(out), layouts, n, cuda::stream());
  }), 12.0 * n);
  report_memory("add", "float4", time_us([&] {
    cuda::binary(cuda::BinaryKind::Add, cuda::ScalarType::Float32, cfp(x), cfp(y), fp(out), layouts, n, cuda::stream());
  }), 12.0 * n);
  Tensor r = empty_gpu({n});
  report_memory("random_uniform", "naive", time_us([&] {
    cuda::random_uniform_naive(fp(r), n, 7, 0, 0.0f, 1.0f, cuda::stream());
  }), 4.0 * n);
  report_memory("random_uniform", "4/philox", time_us([&] {
    cuda::random_uniform(fp(r), cuda::ScalarType::Float32, n, 7, 0, 0.0, 1.0, cuda::stream());
  }), 4.0 * n);
}

// cat of the q, k, v weights (ViT-B/32: 3 x [768, 768]) and biases (3 x [768]) as
// training stacks them each step: one copy per input into its slice (what ops::cat did)
// against one launch for the whole cat (cuda/concat.cu). Both validated byte-exact first.
void bench_concat() {
  std::printf("kernel copy: cat of 3 q/k/v weights [768, 768] and of 3 biases [768] (ViT-B/32 attention)\n");
  for (const Shape& shape : {Shape{768, 768}, Shape{768}}) {
    std::vector<Tensor> inputs;
    for (int i = 0; i < 3; ++i) inputs.push_back(randn_gpu(shape, 90 + i));
    std::vector<Tensor> on_cpu;
    for (const Tensor& t : inputs) on_cpu.push_back(t.to(Device::cpu()));
    const Tensor ref = ops::cat(on_cpu, 0);
    Tensor out = empty_gpu(ref.shape());
    auto by_slices = [&] {
      int64_t start = 0;
      for (const Tensor& t : inputs) {
        Tensor slot = ops::narrow(out, 0, start, t.size(0));
        cuda_backend().copy(t, slot);
        start += t.size(0);
      }
    };
    auto one_launch = [&] { (void)cuda_backend().concat_contiguous(inputs, out); };
    const std::string what = shape.size() == 2 ? "weights" : "biases";
    by_slices();
    validate(("cat " + what + " by slices vs cpu (exact)").c_str(), out, ref, 0.0);
    ops::fill_(out, 0.0);
    if (!cuda_backend().concat_contiguous(inputs, out)) {
      std::printf("  cat %s: the one-launch path was not taken: FAILED\n", what.c_str());
      ++g_failures;
      continue;
    }
    validate(("cat " + what + " one launch vs cpu (exact)").c_str(), out, ref, 0.0);
    const double bytes = 8.0 * double(ref.numel());
    report_memory(("cat " + what).c_str(), "slices", time_us(by_slices), bytes);
    report_memory(("cat " + what).c_str(), "one", time_us(one_launch), bytes);
  }
}

// Copies (cuda/copy.cu): autocast's contiguous float32 <-> bfloat16 casts and attention's
// head transpose [B, L, H, D] -> [B, H, L, D], one element per thread (naive) against 4
// per thread as one aligned vector. GB/s count bytes read + written. Exact against the
// CPU: both sides round to nearest even.
void bench_copy() {
  using cuda::ScalarType;
  const int64_t tokens = 32 * 4 * 77, n = tokens * 768;
  std::printf("kernel copy: float32 <-> bfloat16 casts of [%lld, 768]\n", (long long)tokens);
  Tensor x = randn_gpu({tokens, 768}, 80);
  const Tensor xc = x.to(Device::cpu());
  const Tensor ref_bf16 = ops::cast(xc, DType::BFloat16);
  const Tensor ref_f32 = ops::cast(ref_bf16, DType::Float32);
  Tensor xb = ops::cast(x, DType::BFloat16);
  validate("cast f32->bf16 vs cpu (exact)", xb, ref_bf16, 0.0);
  validate("cast bf16->f32 vs cpu (exact)", ops::cast(xb, DType::Float32), ref_f32, 0.0);
  Tensor hb = empty({tokens, 768}, DType::BFloat16, kGpu), hf = empty_gpu({tokens, 768});
  cuda::convert_contiguous_naive(x.raw_data(), ScalarType::Float32, hb.raw_data(), ScalarType::BFloat16, n,
                                 cuda::stream());
  validate("cast f32->bf16 naive vs cpu (exact)", hb, ref_bf16, 0.0);
  cuda::convert_contiguous_naive(xb.raw_data(), ScalarType::BFloat16, hf.raw_data(), ScalarType::Float32, n,
                                 cuda::stream());
  validate("cast bf16->f32 naive vs cpu (exact)", hf, ref_f32, 0.0);
  struct Cast { const char* name; const Tensor& src; ScalarType from; Tensor& dst; ScalarType to; };
  for (const Cast& c : {Cast{"cast f32->bf16", x, ScalarType::Float32, hb, ScalarType::BFloat16},
                        Cast{"cast bf16->f32", xb, ScalarType::BFloat16, hf, ScalarType::Float32}}) {
    report_memory(c.name, "naive", time_us([&] {
      cuda::convert_contiguous_naive(c.src.raw_data(), c.from, c.dst.raw_data(), c.to, n, cuda::stream());
    }), 6.0 * n);
    report_memory(c.name, "vec4", time_us([&] {
      cuda::convert_contiguous(c.src.raw_data(), c.from, c.dst.raw_data(), c.to, n, cuda::stream());
    }), 6.0 * n);
  }

  const int64_t B = 128, L = 77, H = 8, D = 64, m = B * L * H * D;
  std::printf("kernel copy: transpose [%lld, %lld, %lld, %lld] -> [%lld, %lld, %lld, %lld] (text tower heads)\n",
              (long long)B, (long long)L, (long long)H, (long long)D, (long long)B, (long long)H, (long long)L,
              (long long)D);
  Tensor q = randn_gpu({B, L, H, D}, 81);
  const Tensor ref_t = ops::transpose(q.to(Device::cpu()), 1, 2).contiguous();
  const Tensor ref_tb = ops::cast(ref_t, DType::BFloat16);
  // the layouts the backend builds for this copy: {dst [B, H, L, D] contiguous, q viewed
  // as [B, H, L, D]}
  const int64_t sizes[4] = {B, H, L, D};
  const int64_t dst_strides[4] = {H * L * D, L * D, D, 1};
  const int64_t src_strides[4] = {L * H * D, D, H * D, 1};
  const int64_t* strides[2] = {dst_strides, src_strides};
  cuda::StridedLayout layouts[2];
  if (!cuda::coalesce_layouts(4, sizes, strides, 2, layouts)) {
    std::printf("  coalesce_layouts failed: FAILED\n");
    ++g_failures;
    return;
  }
  Tensor tf = empty_gpu({B, H, L, D}), tb = empty({B, H, L, D}, DType::BFloat16, kGpu);
  validate("transpose f32 vs cpu (exact)", ops::transpose(q, 1, 2).contiguous(), ref_t, 0.0);
  validate("transpose f32->bf16 vs cpu (exact)", ops::cast(ops::transpose(q, 1, 2), DType::BFloat16), ref_tb, 0.0);
  cuda::copy_strided_naive(q.raw_data(), ScalarType::Float32, tf.raw_data(), ScalarType::Float32, layouts, m,
                           cuda::stream());
  validate("transpose f32 naive vs cpu (exact)", tf, ref_t, 0.0);
  cuda::copy_strided_naive(q.raw_data(), ScalarType::Float32, tb.raw_data(), ScalarType::BFloat16, layouts, m,
                           cuda::stream());
  validate("transpose f32->bf16 naive vs cpu (exact)", tb, ref_tb, 0.0);
  struct Transpose { const char* name; Tensor& dst; ScalarType to; double bytes; };
  for (const Transpose& t : {Transpose{"transpose f32", tf, ScalarType::Float32, 8.0 * m},
                             Transpose{"transpose f32->bf16", tb, ScalarType::BFloat16, 6.0 * m}}) {
    report_memory(t.name, "naive", time_us([&] {
      cuda::copy_strided_naive(q.raw_data(), ScalarType::Float32, t.dst.raw_data(), t.to, layouts, m, cuda::stream());
    }), t.bytes);
    report_memory(t.name, "vec4", time_us([&] {
      cuda::copy_strided(q.raw_data(), ScalarType::Float32, t.dst.raw_data(), t.to, layouts, m, cuda::stream());
    }), t.bytes);
  }
  bench_concat();
}

// Fused dropout vs the four-launch composition it replaced (rand, >=, where, mul). GB/s
// count the fused kernel's floor, 8 B/element (read x, write out), for every variant, so
// the columns compare times; the composition really moves ~26 B/element.
void bench_dropout() {
  const int64_t tokens = 32 * 4 * 77, n = tokens * 3072;
  const double p = 0.1;
  std::printf("kernel dropout: p = %.1f on [%lld, 3072]\n", p, (long long)tokens);
  Tensor x = randn_gpu({tokens, 3072}, 30), out = empty_gpu({tokens, 3072});
  const Tensor xc = x.to(Device::cpu());
  // bit-exact against the CPU kernel: stream offset 0 takes the float4 path, 2 the float2
  // path (the default generator's offsets are even), 1 the per-lane one
  validate("dropout float4 vs cpu (exact)", ops::dropout(x, p, 7, 0), ops::dropout(xc, p, 7, 0), 0.0);
  validate("dropout float2 vs cpu (exact)", ops::dropout(x, p, 7, 2), ops::dropout(xc, p, 7, 2), 0.0);
  validate("dropout per-lane vs cpu (exact)", ops::dropout(x, p, 7, 1), ops::dropout(xc, p, 7, 1), 0.0);
  cuda::dropout_f32_naive(cfp(x), fp(out), n, p, 7, 2, cuda::stream());
  validate("dropout naive vs cpu (exact)", out, ops::dropout(xc, p, 7, 2), 0.0);
  auto composed = [&] {
    Tensor u = rand({tokens, 3072}, 7, 0, DType::Float32, kGpu);
    Tensor keep = ops::binary(BinaryOp::Ge, u, full({}, p, DType::Float32, kGpu));
    Tensor mask = ops::where(keep, full({}, 1.0 / (1.0 - p), DType::Float32, kGpu),
                             full({}, 0.0, DType::Float32, kGpu));
    return ops::mul(x, mask);
  };
  validate("dropout composed vs fused (exact)", composed(), ops::dropout(x, p, 7, 0), 0.0);
  report_memory("dropout", "composed", time_us([&] { composed(); }), 8.0 * n);
  report_memory("dropout", "naive", time_us([&] {
    cuda::dropout_f32_naive(cfp(x), fp(out), n, p, 7, 0, cuda::stream());
  }), 8.0 * n);
  report_memory("dropout", "per-lane", time_us([&] {
    cuda::dropout(cfp(x), fp(out), cuda::ScalarType::Float32, n, p, 7, 1, cuda::stream());
  }), 8.0 * n);
  report_memory("dropout", "float2", time_us([&] {
    cuda::dropout(cfp(x), fp(out), cuda::ScalarType::Float32, n, p, 7, 2, cuda::stream());
  }), 8.0 * n);
  report_memory("dropout", "float4", time_us([&] {
    cuda::dropout(cfp(x), fp(out), cuda::ScalarType::Float32, n, p, 7, 0, cuda::stream());
  }), 8.0 * n);
}

void bench_rows() {
  const int64_t rows = 32 * 4 * 77, cols = 768;
  std::printf("kernel rows: reduce / layer_norm on [%lld, %lld], softmax on attention scores\n", (long long)rows,
              (long long)cols);
  Tensor x = randn_gpu({rows, cols}, 20), out = empty_gpu({rows});
  Tensor xc = x.to(Device::cpu());
  validate("sum rows vs cpu", ops::sum(x, {1}), ops::sum(xc, {1}));
  validate("logsumexp rows vs cpu", ops::logsumexp(x, {1}), ops::logsumexp(xc, {1}));
  report_memory("reduce_sum", "naive", time_us([&] {
    cuda::reduce_last_f32_naive(cuda::ReduceKind::Sum, cfp(x), rows, cols, fp(out), cuda::stream());
  }), 4.0 * rows * cols);
  report_memory("reduce_sum", "warp", time_us([&] {
    cuda::reduce_last_f32(cuda::ReduceKind::Sum, cfp(x), rows, cols, fp(out), cuda::stream());
  }), 4.0 * rows * cols);

  for (auto [srows, scols] : {std::pair<int64_t, int64_t>{8 * 12 * 50, 50}, {128 * 8 * 77, 77}}) {
    Tensor s = randn_gpu({srows, scols}, 21), y = empty_gpu({srows, scols});
    validate("softmax vs cpu", ops::softmax(s, -1), ops::softmax(s.to(Device::cpu()), -1));
    const std::string name = "softmax [" + std::to_string(srows) + "," + std::to_string(scols) + "]";
    report_memory(name.c_str(), "naive", time_us([&] {
      cuda::softmax_forward_f32_naive(cfp(s), fp(y), srows, scols, false, cuda::stream());
    }), 8.0 * srows * scols);
    report_memory(name.c_str(), "warp", time_us([&] {
      cuda::softmax_forward_f32(cfp(s), fp(y), srows, scols, false, cuda::stream());
    }), 8.0 * srows * scols);
  }

  Tensor w = randn_gpu({cols}, 22), b = randn_gpu({cols}, 23), y = empty_gpu({rows, cols});
  Tensor mean = empty_gpu({rows}), rstd = empty_gpu({rows}), g = randn_gpu({rows, cols}, 24);
  Tensor gx = empty_gpu({rows, cols}), gw = empty_gpu({cols}), gb = empty_gpu({cols});
  auto ref = ops::layer_norm(xc, w.to(Device::cpu()), b.to(Device::cpu()), 1e-5);
  auto got = ops::layer_norm(x, w, b, 1e-5);
  validate("layer_norm vs cpu", got.y, ref.y);
  auto ref_grads = ops::layer_norm_backward(g.to(Device::cpu()), xc, w.to(Device::cpu()), ref.mean, ref.rstd, true);
  auto got_grads = ops::layer_norm_backward(g, x, w, got.mean, got.rstd, true);
  validate("layer_norm grad_x vs cpu", got_grads.grad_x, ref_grads.grad_x);
  validate("layer_norm grad_weight vs cpu", got_grads.grad_weight, ref_grads.grad_weight);
  report_memory("layer_norm fwd", "naive", time_us([&] {
    cuda::layer_norm_forward_f32_naive(cfp(x), cfp(w), cfp(b), fp(y), fp(mean), fp(rstd), rows, cols, 1e-5f, cuda::stream());
  }), 8.0 * rows * cols);
  report_memory("layer_norm fwd", "warp", time_us([&] {
    cuda::layer_norm_forward_f32(cfp(x), cfp(w), cfp(b), fp(y), fp(mean), fp(rstd), rows, cols, 1e-5f, cuda::stream());
  }), 8.0 * rows * cols);
  report_memory("layer_norm bwd", "warp", time_us([&] {
    cuda::layer_norm_backward_f32(cfp(g), cfp(x), cfp(w), cfp(mean), cfp(rstd), nullptr, fp(gx), fp(gw), fp(gb), rows, cols,
                                  cuda::stream());
  }), 16.0 * rows * cols);
}

void bench_gemm() {
  const int64_t m = 32 * 4 * 77, k = 768, n = 3072;
  std::printf("kernel gemm: [%lld, %lld] @ [%lld, %lld] (MLP up-projection)\n", (long long)m, (long long)k,
              (long long)k, (long long)n);
  Tensor a = randn_gpu({1, m, k}, 30), b = randn_gpu({1, k, n}, 31), c = empty_gpu({1, m, n});
  // Validate on the first 256 rows: the CPU reference at full size would dominate the run.
  Tensor a_rows = ops::narrow(a, 1, 0, 256).contiguous();
  Tensor b_cpu = b.to(Device::cpu());
  validate("sgemm vs cpu (256 rows)", ops::matmul(a_rows, b), ops::matmul(a_rows.to(Device::cpu()), b_cpu));
  const double flops = 2.0 * m * n * k;
  report_compute("gemm", "naive", time_us([&] {
    cuda::gemm_strided_batched_f32_naive(false, false, 1, m, n, k, 1.0f, cfp(a), 0, cfp(b), 0, 0.0f, fp(c), 0, cuda::stream());
  }), flops, g_peak_fp32);
  report_compute("gemm", "cublas", time_us([&] {
    cuda::gemm_strided_batched_f32(false, false, 1, m, n, k, 1.0f, cfp(a), 0, cfp(b), 0, 0.0f, fp(c), 0, cuda::stream());
  }), flops, g_peak_fp32);
  cuda::set_tf32_enabled(true);
  validate("tf32 gemm vs cpu (256 rows)", ops::matmul(a_rows, b), ops::matmul(a_rows.to(Device::cpu()), b_cpu), 1e-3);
  report_compute("gemm", "cublas tf32", time_us([&] {
    cuda::gemm_strided_batched_f32(false, false, 1, m, n, k, 1.0f, cfp(a), 0, cfp(b), 0, 0.0f, fp(c), 0, cuda::stream());
  }), flops, g_peak_tf32);
  cuda::set_tf32_enabled(false);
}

// The linear layer y = x W^T + b (and gelu_tanh of it): the old path (the output
// pre-filled with the bias, then cuBLAS with beta = 1; the GELU a separate kernel)
// against one cuBLASLt GEMM with the bias / GELU epilogue (cuda/gemm_lt.h), at the
// ViT-B/32 MLP shapes, B = 32 images (50 tokens each). Validated through ops::linear
// with the cuBLASLt switch off and on (what the model runs), then the kernels timed.
void bench_linear_epilogue() {
  const int64_t rows = 50 * 32;
  const bool lt_before = cuda::cublaslt_enabled();
  struct Shape2 { const char* name; int64_t in, out; };
  for (const Shape2& layer : {Shape2{"fc1", 768, 3072}, Shape2{"fc2", 3072, 768}}) {
    std::printf("kernel linear %s: [%lld, %lld] x [%lld, %lld]^T + b (ViT-B/32 MLP, B = 32)\n", layer.name,
                (long long)rows, (long long)layer.in, (long long)layer.out, (long long)layer.in);
    Tensor x = randn_gpu({rows, layer.in}, 50), w = randn_gpu({layer.out, layer.in}, 51);
    Tensor b = randn_gpu({layer.out}, 52);
    const double flops = 2.0 * rows * layer.in * layer.out;
    // Validate on the first 256 rows against the CPU, every path and precision first.
    Tensor x_rows = ops::narrow(x, 0, 0, 256).contiguous();
    Tensor x_rows_cpu = x_rows.to(Device::cpu()), w_cpu = w.to(Device::cpu()), b_cpu = b.to(Device::cpu());
    const Tensor ref = ops::linear(x_rows_cpu, w_cpu, b_cpu);
    const Tensor ref_gelu = ops::unary(UnaryOp::GeluTanh, ref);
    Tensor xb_rows = ops::cast(x_rows, DType::BFloat16), wb = ops::cast(w, DType::BFloat16);
    const Tensor ref_bf16 = ops::linear(xb_rows.to(Device::cpu()), wb.to(Device::cpu()), b_cpu);
    for (bool tf32 : {false, true}) {
      cuda::set_tf32_enabled(tf32);
      const double tolerance = tf32 ? 1e-3 : 1e-4;
      for (bool lt : {false, true}) {
        cuda::set_cublaslt_enabled(lt);
        const std::string label = std::string(tf32 ? "tf32 " : "fp32 ") + (lt ? "cublaslt" : "cublas+bias");
        validate((label + " linear").c_str(), ops::linear(x_rows, w, b), ref, tolerance);
        // 1e-3: cuBLASLt's tanh may be a hardware approximation (tests/test_cuda_gemm_lt.cpp)
        validate((label + " linear+gelu").c_str(), ops::linear_gelu_tanh(x_rows, w, b, true).y, ref_gelu, 1e-3);
        if (!tf32) validate((std::string("bf16 ") + (lt ? "cublaslt" : "cublas+bias") + " linear").c_str(),
                            ops::linear(xb_rows, wb, b), ref_bf16);
      }
    }
    // Then time the kernels each path queues, on preallocated buffers: the GEMM alone (no
    // bias: what both paths approach), the bias pass + GEMM (beta = 1) [+ GELU kernel],
    // and the one cuBLASLt call.
    Tensor xb = ops::cast(x, DType::BFloat16), y = empty_gpu({rows, layer.out}), h = empty_gpu({rows, layer.out});
    const Tensor b_rows = ops::expand(b, {rows, layer.out});  // stride 0 over rows
    struct Mode { const char* name; bool tf32, bf16; };
    for (const Mode& mode : {Mode{"fp32", false, false}, Mode{"tf32", true, false}, Mode{"bf16", false, true}}) {
      cuda::set_tf32_enabled(mode.tf32);
      const Tensor& xs = mode.bf16 ? xb : x;
      const Tensor& ws = mode.bf16 ? wb : w;
      auto report = [&](const char* what, const char* path, double us) {
        const std::string variant = std::string(mode.name) + " " + path;
        if (mode.bf16) {  // no bf16 peak is measured here: TFLOP/s only
          std::printf("  %-26s %-10s %10.2f us %9.2f TFLOP/s\n", what, variant.c_str(), us, flops / (us * 1e-6) / 1e12);
        } else {
          report_compute(what, variant.c_str(), us, flops, mode.tf32 ? g_peak_tf32 : g_peak_fp32);
        }
      };
      auto gemm = [&](float beta) {
        if (mode.bf16) {
          cuda::gemm_strided_batched_bf16_f32(false, true, 1, rows, layer.out, layer.in, 1.0f,
                                              static_cast<const uint16_t*>(xs.raw_data()), 0,
                                              static_cast<const uint16_t*>(ws.raw_data()), 0, beta, fp(y), 0,
                                              cuda::stream());
        } else {
          cuda::gemm_strided_batched_f32(false, true, 1, rows, layer.out, layer.in, 1.0f, cfp(xs), 0, cfp(ws), 0,
                                         beta, fp(y), 0, cuda::stream());
        }
      };
      auto bias_pass_linear = [&] {
        cuda_backend().copy(b_rows, y);
        gemm(1.0f);
      };
      // returns false when cuBLASLt offers no algorithm (counted as a failure: it must)
      auto lt_linear = [&](cuda::LtEpilogue epilogue, float* out, float* pre_activation) {
        const bool ran =
            mode.bf16 ? cuda::linear_lt_bf16_f32(epilogue, rows, layer.out, layer.in,
                                                 static_cast<const uint16_t*>(xs.raw_data()),
                                                 static_cast<const uint16_t*>(ws.raw_data()), cfp(b), out,
                                                 pre_activation, cuda::stream())
                      : cuda::linear_lt_f32(epilogue, rows, layer.out, layer.in, cfp(xs), cfp(ws), cfp(b), out,
                                            pre_activation, cuda::stream());
        if (!ran) {
          std::printf("  cuBLASLt offered no algorithm (%s): FAILED\n", mode.name);
          ++g_failures;
        }
      };
      report("gemm, no bias", "cublas", time_us([&] { gemm(0.0f); }));
      report("linear", "bias-pass", time_us(bias_pass_linear));
      report("linear", "lt-epilogue", time_us([&] { lt_linear(cuda::LtEpilogue::Bias, fp(y), nullptr); }));
      report("linear+gelu_tanh", "bias-pass", time_us([&] {
        bias_pass_linear();
        cuda_backend().unary(UnaryOp::GeluTanh, y, h, 0.0, 0.0);
      }));
      // training keeps the GELU's input (GELU_AUX_BIAS); inference does not (GELU_BIAS)
      report("linear+gelu_tanh train", "lt-epilogue",
             time_us([&] { lt_linear(cuda::LtEpilogue::GeluTanhBias, fp(y), fp(h)); }));
      report("linear+gelu_tanh infer", "lt-epilogue",
             time_us([&] { lt_linear(cuda::LtEpilogue::GeluTanhBias, fp(y), nullptr); }));
    }
    cuda::set_tf32_enabled(false);
  }
  cuda::set_cublaslt_enabled(lt_before);
}

// The linear layer's weight and bias gradients, as the backward runs them: the GEMM
// dW = dy^T x then the bias gradient as a separate row sum of dy (ops::linear_bias_grad:
// a column sum for float32, a mixed GEMV with a ones row for bf16), against one cuBLASLt
// GEMM whose BGRADB
// epilogue sums db while dy streams through (cuda/gemm_lt.h). Shapes: the fc1 of both
// towers at B = 32 (ViT-B/32: 50 x 32 tokens, 768 -> 3072; text: 77 x 128 tokens,
// 512 -> 2048) in float32 and bf16; then, bf16 only, the other linears of a layer and
// fc1 at B = 128. On the H200 BGRADB was 1.95x faster at the vision fc1 (1600 rows) and
// 0.92x at the text fc1 (9856 rows): these rows say where the two cross, by rows and by
// output width, before the linear picks one per shape. Validated through
// ops::linear_weight_grad (cuBLASLt on and off) against the CPU on the first 256 rows.
void bench_linear_weight_grad() {
  const bool lt_before = cuda::cublaslt_enabled();
  struct Layer { const char* name; int64_t lists, rows, in, out; bool fp32_too; };
  const Layer layers[] = {
      {"vision fc1", 32, 50 * 32, 768, 3072, true},     {"text fc1", 32, 77 * 128, 512, 2048, true},
      {"vision qkv", 32, 50 * 32, 768, 3 * 768, false}, {"text qkv", 32, 77 * 128, 512, 3 * 512, false},
      {"vision fc2", 32, 50 * 32, 3072, 768, false},    {"text fc2", 32, 77 * 128, 2048, 512, false},
      {"vision fc1", 128, 50 * 128, 768, 3072, false},  {"text fc1", 128, 77 * 512, 512, 2048, false}};
  for (const Layer& layer : layers) {
    std::printf("kernel linear_weight_grad %s: dy [%lld, %lld], x [%lld, %lld] (B = %lld)\n", layer.name,
                (long long)layer.rows, (long long)layer.out, (long long)layer.rows, (long long)layer.in,
                (long long)layer.lists);
    Tensor x = randn_gpu({layer.rows, layer.in}, 60), dy = randn_gpu({layer.rows, layer.out}, 61);
    Tensor xb = ops::cast(x, DType::BFloat16), dyb = ops::cast(dy, DType::BFloat16);
    const double flops = 2.0 * layer.rows * layer.in * layer.out;
    for (bool bf16 : {false, true}) {
      if (!bf16 && !layer.fp32_too) continue;
      const Tensor& xs = bf16 ? xb : x;
      const Tensor& gs = bf16 ? dyb : dy;
      const Tensor x_rows = ops::narrow(xs, 0, 0, 256).contiguous(), g_rows = ops::narrow(gs, 0, 0, 256).contiguous();
      const ops::LinearWeightGrads ref =
          ops::linear_weight_grad(g_rows.to(Device::cpu()), x_rows.to(Device::cpu()), true);
      for (bool lt : {false, true}) {
        cuda::set_cublaslt_enabled(lt);
        const std::string label = std::string(bf16 ? "bf16 " : "fp32 ") + (lt ? "lt-bgradb" : "gemm+sum");
        const ops::LinearWeightGrads got = ops::linear_weight_grad(g_rows, x_rows, true);
        validate((label + " grad weight").c_str(), got.weight, ref.weight);
        validate((label + " grad bias").c_str(), got.bias, ref.bias);
      }
      Tensor grad_weight = empty_gpu({layer.out, layer.in}), grad_bias = empty_gpu({layer.out});
      const double peak = bf16 ? g_peak_bf16 : g_peak_fp32;
      const char* mode = bf16 ? "bf16" : "fp32";
      cuda::set_cublaslt_enabled(false);
      Tensor grad_weight3 = ops::reshape(grad_weight, {1, layer.out, layer.in});
      report_compute("weight grad, no bias", (std::string(mode) + " cublas").c_str(), time_us([&] {
        cuda_backend().bmm(ops::reshape(gs, {1, layer.rows, layer.out}), ops::reshape(xs, {1, layer.rows, layer.in}),
                           grad_weight3, true, false, 1.0, 0.0);
      }), flops, peak);
      // both rows through ops::linear_weight_grad, output allocations included
      report_compute("weight + bias grad", (std::string(mode) + " gemm+sum").c_str(),
                     time_us([&] { (void)ops::linear_weight_grad(gs, xs, true); }), flops, peak);
      cuda::set_cublaslt_enabled(true);
      if (!cuda_backend().linear_weight_grad(gs, xs, grad_weight, grad_bias)) {
        // bf16 is what training runs, so it must fuse; pure float32 may have no kernel
        std::printf("  cuBLASLt offered no BGRADB algorithm (%s)%s\n", mode,
                    bf16 ? ": FAILED" : ": the model runs the gemm+sum row");
        if (bf16) ++g_failures;
        continue;
      }
      report_compute("weight + bias grad", (std::string(mode) + " lt-bgradb").c_str(),
                     time_us([&] { (void)ops::linear_weight_grad(gs, xs, true); }), flops, peak);
    }
  }
  cuda::set_cublaslt_enabled(lt_before);
}

// bf16 attention as a bf16 step's layer runs it: q, k, v are head views of [B, L, H, D]
// projections, the output is merged back to [B, L, H * D] and the gradients to the
// projections' layout, all inside the timed region (the GEMM path and cuDNN copy there;
// the tiles read and write in place). Three kernels on the same bf16 inputs: our GEMM
// path (bf16 GEMMs, float32 masked softmax), cuDNN's fused flash attention
// (MMS_ATTENTION=cudnn) and our tensor-core tiles (MMS_ATTENTION=tiles), each validated
// first against float32 attention of those inputs on the CPU.
void bench_bf16_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, bool causal,
                          double scale, double flops) {
  // [B, H, L, D] values -> the same values as head views of [B, L, H, D] bf16 memory
  auto head_view = [](const Tensor& t) {
    return ops::transpose(ops::transpose(t, 1, 2).contiguous().to(DType::BFloat16), 1, 2);
  };
  const Tensor qb = head_view(q), kb = head_view(k), vb = head_view(v), gb = head_view(g);
  auto widened = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::Float32); };
  auto merged = [](const Tensor& t) { return ops::transpose(t, 1, 2).contiguous(); };  // no copy when in place
  const auto ref = ops::attention(widened(qb), widened(kb), widened(vb), Tensor(), causal, scale);
  const auto ref_grads = ops::attention_backward(widened(gb), widened(qb), widened(kb), widened(vb), ref.out,
                                                 ref.lse, Tensor(), causal, scale);
  const std::optional<DType> bf16 = DType::BFloat16;
  for (ops::AttentionPath path : {ops::AttentionPath::Gemm, ops::AttentionPath::Cudnn, ops::AttentionPath::Tiles}) {
    const char* label = path == ops::AttentionPath::Cudnn ? "cudnn bf16"
                        : path == ops::AttentionPath::Tiles ? "tiles bf16"
                                                            : "gemm bf16";
    if (path == ops::AttentionPath::Cudnn && !cuda::cudnn_attention_built()) {
      std::printf("  attention bf16 via cuDNN: not built (no cuDNN frontend headers at configure time)\n");
      continue;
    }
    ops::AttentionPathGuard guard(path);
    cuda::set_tf32_enabled(true);  // as in the bf16 step (the GEMM path's float32 parts)
    // cuDNN writes bf16 whatever it is asked; the others write bf16 when asked, as the step asks
    const std::optional<DType> asked = path == ops::AttentionPath::Cudnn ? std::nullopt : bf16;
    try {
      const auto got = ops::attention(qb, kb, vb, Tensor(), causal, scale, asked);
      validate((std::string(label) + " out vs cpu").c_str(), got.out, ref.out, 2e-2);
      const auto grads = ops::attention_backward(gb, qb, kb, vb, got.out, got.lse, Tensor(), causal, scale, asked);
      validate((std::string(label) + " grad_q vs cpu").c_str(), grads.grad_q, ref_grads.grad_q, 2e-2);
      validate((std::string(label) + " grad_k vs cpu").c_str(), grads.grad_k, ref_grads.grad_k, 2e-2);
      validate((std::string(label) + " grad_v vs cpu").c_str(), grads.grad_v, ref_grads.grad_v, 2e-2);
      report_compute("attention fwd (layer view)", label, time_us([&] {
        merged(ops::attention(qb, kb, vb, Tensor(), causal, scale, asked).out);
      }), flops, g_peak_bf16);
      report_compute("attention bwd (layer view)", label, time_us([&] {
        const auto back = ops::attention_backward(gb, qb, kb, vb, got.out, got.lse, Tensor(), causal, scale, asked);
        for (const Tensor* grad : {&back.grad_q, &back.grad_k, &back.grad_v}) merged(*grad);
      }), 2.5 * flops, g_peak_bf16);
    } catch (const std::exception& e) {  // e.g. cuDNN has no engine for this shape on this card
      ++g_failures;
      std::printf("  attention %s: FAILED: %s\n", label, e.what());
    }
    cuda::set_tf32_enabled(false);
  }
}

void bench_attention() {
  struct Case { const char* name; int64_t B, H, L, D; bool causal; };
  for (const Case& c : {Case{"vit b8", 8, 12, 50, 64, false}, Case{"vit b32", 32, 12, 50, 64, false},
                        Case{"text 128x77", 128, 8, 77, 64, true}}) {
    std::printf("kernel attention %s: B %lld H %lld L %lld D %lld%s\n", c.name, (long long)c.B, (long long)c.H,
                (long long)c.L, (long long)c.D, c.causal ? " causal" : "");
    const Shape shape = {c.B, c.H, c.L, c.D};
    Tensor q = randn_gpu(shape, 40), k = randn_gpu(shape, 41), v = randn_gpu(shape, 42), g = randn_gpu(shape, 43);
    Tensor out = empty_gpu(shape), lse = empty_gpu({c.B, c.H, c.L});
    Tensor gq = empty_gpu(shape), gk = empty_gpu(shape), gv = empty_gpu(shape);
    const double scale = 1.0 / std::sqrt(double(c.D));
    auto ref = ops::attention(q.to(Device::cpu()), k.to(Device::cpu()), v.to(Device::cpu()), Tensor(), c.causal, scale);
    auto ref_grads = ops::attention_backward(g.to(Device::cpu()), q.to(Device::cpu()), k.to(Device::cpu()),
                                             v.to(Device::cpu()), ref.out, ref.lse, Tensor(), c.causal, scale);
    // Both GPU paths of ops::attention (tensor/ops/attention.cpp) are validated, then timed.
    for (ops::AttentionPath path : {ops::AttentionPath::Fused, ops::AttentionPath::Gemm}) {
      ops::set_attention_path(path);
      const std::string label = path == ops::AttentionPath::Fused ? "flash" : "gemm-path";
      auto got = ops::attention(q, k, v, Tensor(), c.causal, scale);
      validate((label + " out vs cpu").c_str(), got.out, ref.out);
      auto got_grads = ops::attention_backward(g, q, k, v, got.out, got.lse, Tensor(), c.causal, scale);
      validate((label + " grad_q vs cpu").c_str(), got_grads.grad_q, ref_grads.grad_q);
      validate((label + " grad_k vs cpu").c_str(), got_grads.grad_k, ref_grads.grad_k);
      validate((label + " grad_v vs cpu").c_str(), got_grads.grad_v, ref_grads.grad_v);
    }
    ops::set_attention_path(ops::AttentionPath::Gemm);
    for (bool tf32 : {false, true}) {
      cuda::set_tf32_enabled(tf32);
      auto fwd = ops::attention(q, k, v, Tensor(), c.causal, scale);
      const double flops_fwd = 4.0 * c.B * c.H * c.L * c.L * c.D * (c.causal ? 0.5 : 1.0);
      report_compute("attention fwd", tf32 ? "gemm tf32" : "gemm", time_us([&] {
        ops::attention(q, k, v, Tensor(), c.causal, scale);
      }), flops_fwd, tf32 ? g_peak_tf32 : g_peak_fp32);
      report_compute("attention bwd", tf32 ? "gemm tf32" : "gemm", time_us([&] {
        ops::attention_backward(g, q, k, v, fwd.out, fwd.lse, Tensor(), c.causal, scale);
      }), 2.5 * flops_fwd, tf32 ? g_peak_tf32 : g_peak_fp32);
    }
    cuda::set_tf32_enabled(false);
    ops::set_attention_path(ops::AttentionPath::Auto);
    const cuda::AttentionShape s{c.B, c.H, c.L, c.L, c.D};
    const double flops = 4.0 * c.B * c.H * c.L * c.L * c.D * (c.causal ? 0.5 : 1.0);
    report_compute("attention fwd", "naive", time_us([&] {
      cuda::attention_forward_f32_naive(cfp(q), cfp(k), cfp(v), nullptr, c.causal, float(scale), fp(out), fp(lse), s,
                                        cuda::stream());
    }), flops, g_peak_fp32);
    report_compute("attention fwd", "flash", time_us([&] {
      cuda::attention_forward_f32(cfp(q), cfp(k), cfp(v), nullptr, c.causal, float(scale), fp(out), fp(lse), s,
                                  cuda::stream());
    }), flops, g_peak_fp32);
    report_compute("attention bwd", "naive", time_us([&] {
      cuda::attention_backward_f32_naive(cfp(g), cfp(q), cfp(k), cfp(v), cfp(out), cfp(lse), nullptr, c.causal,
                                         float(scale), fp(gq), fp(gk), fp(gv), s, cuda::stream());
    }), 2.5 * flops, g_peak_fp32);
    report_compute("attention bwd", "flash", time_us([&] {
      cuda::attention_backward_f32(cfp(g), cfp(q), cfp(k), cfp(v), cfp(out), cfp(lse), nullptr, c.causal,
                                   float(scale), fp(gq), fp(gk), fp(gv), s, cuda::stream());
    }), 2.5 * flops, g_peak_fp32);
    bench_bf16_attention(q, k, v, g, c.causal, scale, flops);
  }
}

// Attention's masked softmax (the GEMM path) against the composition it replaced: build
// the causal + key-padding mask, where(mask, S, -inf), logsumexp, softmax, where(mask, P,
// 0) and the cast of P to bf16 for PV. GB/s count the fused kernel's floor for both
// (read 4 B of scores, write 2 B of bf16 probabilities per element).
void bench_masked_softmax() {
  const int64_t b = 128, h = 8, l = 77;
  std::printf("kernel masked softmax: scores [%lld, %lld, %lld, %lld] causal, 20 padded keys per list\n",
              (long long)b, (long long)h, (long long)l, (long long)l);
  const Shape shape = {b, h, l, l};
  const Tensor scores = ops::mul_scalar(randn_gpu(shape, 60), 3.0);
  std::vector<uint8_t> keep_values(size_t(b * l), 1);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = l - 20; j < l; ++j) keep_values[size_t(i * l + j)] = 0;
  const Tensor keep = from_vector<uint8_t>(keep_values, {b, l}).to(DType::Bool).to(kGpu);
  auto composed = [&] {
    Tensor rows = ops::reshape(arange(0, double(l), 1, DType::Int64, kGpu), {l, 1});
    Tensor cols = ops::reshape(arange(0, double(l), 1, DType::Int64, kGpu), {1, l});
    Tensor causal = ops::reshape(ops::binary(BinaryOp::Le, cols, rows), {1, 1, l, l});
    Tensor allowed = ops::where(ops::reshape(keep, {b, 1, 1, l}), causal, full({}, 0.0, DType::Bool, kGpu));
    Tensor masked = ops::where(allowed, scores, full({}, -INFINITY, DType::Float32, kGpu));
    Tensor lse = ops::logsumexp(masked, {-1});
    Tensor probs = ops::where(allowed, ops::softmax(masked, -1), full({}, 0.0, DType::Float32, kGpu));
    return std::make_pair(ops::cast(probs, DType::BFloat16), lse);
  };
  Tensor probs32 = empty(shape, DType::Float32, kGpu), probs16 = empty(shape, DType::BFloat16, kGpu);
  Tensor lse = empty_gpu({b, h, l});
  cuda_backend().attention_softmax(scores, keep, true, probs32, lse);
  Tensor probs_cpu = empty(shape, DType::Float32), lse_cpu = empty({b, h, l}, DType::Float32);
  cpu_backend().attention_softmax(scores.to(Device::cpu()), keep.to(Device::cpu()), true, probs_cpu, lse_cpu);
  validate("masked softmax probs vs cpu", probs32, probs_cpu);
  validate("masked softmax lse vs cpu", lse, lse_cpu);
  const auto old = composed();
  validate("composed probs vs fused", old.first.to(DType::Float32), probs32, 1e-2);  // bf16 vs float32
  validate("composed lse vs fused", old.second, lse);
  const double bytes = 6.0 * b * h * l * l;
  report_memory("masked softmax", "composed", time_us([&] { composed(); }), bytes);
  report_memory("masked softmax", "fused", time_us([&] {
    cuda_backend().attention_softmax(scores, keep, true, probs16, lse);
  }), bytes);
}

void bench_training_kernels() {
  std::printf("kernel embedding: 32*4*77 tokens from a [49408, 512] table\n");
  const int64_t tokens = 32 * 4 * 77;
  Tensor table = randn_gpu({49408, 512}, 50);
  Tensor index = ops::cast(ops::mul_scalar(rand({tokens}, 51), 49407.0), DType::Int64).to(kGpu);
  Tensor rows = empty_gpu({tokens, 512});
  validate("index_select vs cpu", ops::index_select(table, 0, index),
           ops::index_select(table.to(Device::cpu()), 0, index.to(Device::cpu())));
  report_memory("index_select", "rows", time_us([&] {
    cuda::index_select_rows(table.raw_data(), 4, 49408, 512, static_cast<const int64_t*>(index.raw_data()), tokens,
                            rows.raw_data(), cuda::stream());
  }), 8.0 * tokens * 512);

  std::printf("kernel listmle: 32 lists of 16\n");
  const int64_t lists = 32, width = 16;
  Tensor scores = randn_gpu({lists, width}, 60);
  std::vector<int64_t> order, lengths(lists, width);
  for (int64_t b = 0; b < lists; ++b)
    for (int64_t kk = 0; kk < width; ++kk) order.push_back((kk * 5 + b) % width);
  Tensor order_t = from_vector<int64_t>(order, {lists, width}).to(kGpu);
  Tensor lengths_t = from_vector<int64_t>(lengths, {lists}).to(kGpu);
  Tensor loss = empty_gpu({lists}), grad = empty_gpu({lists, width});
  Tensor loss_c = empty({lists}), grad_c = empty({lists, width});
  cpu_backend().listmle(scores.to(Device::cpu()), order_t.to(Device::cpu()), lengths_t.to(Device::cpu()), loss_c, grad_c);
  cuda_backend().listmle(scores, order_t, lengths_t, loss, grad);
  validate("listmle loss vs cpu", loss, loss_c);
  validate("listmle grad vs cpu", grad, grad_c);
  report_memory("listmle", "block/list", time_us([&] {
    cuda::listmle_f32(cfp(scores), static_cast<const int64_t*>(order_t.raw_data()),
                      static_cast<const int64_t*>(lengths_t.raw_data()), lists, width, fp(loss), fp(grad), cuda::stream());
  }), 4.0 * 4 * lists * width);

  // ViT-B/32 + text tower parameter shapes: per layer 4 attention mats, 2 MLP mats, biases, LN.
  std::vector<int64_t> sizes;
  for (int tower = 0; tower < 2; ++tower) {
    const int64_t width_t = tower == 0 ? 768 : 512;
    for (int layer = 0; layer < 12; ++layer) {
      for (int i = 0; i < 4; ++i) sizes.push_back(width_t * width_t), sizes.push_back(width_t);
      sizes.push_back(4 * width_t * width_t), sizes.push_back(4 * width_t);
      sizes.push_back(4 * width_t * width_t), sizes.push_back(width_t);
      for (int i = 0; i < 4; ++i) sizes.push_back(width_t);
    }
  }
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  std::printf("kernel adamw: %zu tensors, %.1fM parameters\n", sizes.size(), total / 1e6);
  std::vector<Tensor> keep;
  std::vector<cuda::AdamWPointers> pointers;
  std::vector<const float*> grads;
  uint64_t seed = 70;
  for (int64_t s : sizes) {
    Tensor p = randn_gpu({s}, ++seed), g = randn_gpu({s}, ++seed), m = zeros({s}, DType::Float32, kGpu),
           v = zeros({s}, DType::Float32, kGpu);
    keep.insert(keep.end(), {p, g, m, v});
    pointers.push_back({fp(p), cfp(g), fp(m), fp(v), s, 0.1f});
    grads.push_back(cfp(g));
  }
  {  // validate the first few tensors against the CPU after one step
    std::vector<Backend::AdamWTensor> cpu_set, gpu_set;
    for (size_t i = 0; i < 6; ++i)
      cpu_set.push_back({keep[4 * i].to(Device::cpu()).clone(), keep[4 * i + 1].to(Device::cpu()),
                         keep[4 * i + 2].to(Device::cpu()).clone(), keep[4 * i + 3].to(Device::cpu()).clone(), 0.1});
    cpu_backend().adamw(cpu_set, 1e-3, 0.9, 0.999, 1e-8, 1);
    cuda::adamw_f32(pointers.data(), 6, 1e-3, 0.9, 0.999, 1e-8, 1, cuda::stream());
    for (size_t i = 0; i < 6; ++i) validate("adamw param vs cpu", keep[4 * i], cpu_set[i].param);
  }
  report_memory("adamw", "per-tensor", time_us([&] {
    cuda::adamw_f32_per_tensor(pointers.data(), int64_t(pointers.size()), 1e-3, 0.9, 0.999, 1e-8, 2, cuda::stream());
  }), 28.0 * total);
  report_memory("adamw", "multi", time_us([&] {
    cuda::adamw_f32(pointers.data(), int64_t(pointers.size()), 1e-3, 0.9, 0.999, 1e-8, 2, cuda::stream());
  }), 28.0 * total);
  Tensor norm_squared = empty({}, DType::Float64, kGpu);
  report_memory("sum_of_squares", "multi", time_us([&] {
    cuda::sum_of_squares_f32(grads.data(), sizes.data(), int64_t(sizes.size()),
                             static_cast<double*>(norm_squared.raw_data()), cuda::stream());
  }), 4.0 * total);
}

}  // namespace

// bench/kernels [family ...]: the named families only (e.g. `copy masked_softmax`), all
// without arguments; the peaks are always measured (every percentage needs them).
int main(int argc, char** argv) {
  if (!cuda_available()) {
    std::printf("bench/kernels: skipped: no GPU\n");
    return 0;
  }
  const cuda::DeviceInfo info = cuda::device_info();
  std::printf("device %s, %d SMs, %.0f GiB\n", info.name.c_str(), info.sm_count, info.total_memory / double(1 << 30));
  const std::vector<std::pair<std::string, void (*)()>> families = {
      {"elementwise", bench_elementwise}, {"copy", bench_copy},
      {"dropout", bench_dropout},         {"rows", bench_rows},
      {"gemm", bench_gemm},               {"linear", bench_linear_epilogue},
      {"linear_grad", bench_linear_weight_grad},
      {"attention", bench_attention},     {"masked_softmax", bench_masked_softmax},
      {"training", bench_training_kernels}};
  const std::vector<std::string> chosen(argv + 1, argv + argc);
  for (const std::string& name : chosen) {
    bool known = false;
    for (const auto& family : families) known = known || family.first == name;
    if (!known) {
      std::printf("bench/kernels: unknown family '%s' (elementwise, copy, dropout, rows, gemm, linear, "
                  "linear_grad, attention, masked_softmax, training)\n", name.c_str());
      return 2;
    }
  }
  try {
    measure_peaks();
    for (const auto& [name, run] : families) {
      bool wanted = chosen.empty();
      for (const std::string& c : chosen) wanted = wanted || c == name;
      if (wanted) run();
    }
  } catch (const std::exception& e) {
    std::printf("bench/kernels: error: %s\n", e.what());
    return 1;
  }
  const cuda::PoolStats stats = cuda::pool_stats();
  std::printf("pool: peak %.1f MiB in use, %.1f MiB reserved, %llu allocations\n", stats.peak_bytes_in_use / 1048576.0,
              stats.bytes_reserved / 1048576.0, (unsigned long long)stats.allocations);
  std::printf("%s: %d validation failure(s)\n", g_failures ? "FAILED" : "ok", g_failures);
  return g_failures ? 1 : 0;
}

#endif
