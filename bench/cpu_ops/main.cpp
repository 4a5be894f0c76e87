// CPU kernel throughput: GEMM GFLOP/s through cpu_backend().bmm beside Eigen's own
// GEMM on the same shapes and threads (the ratio is the point: bmm maps tensors
// straight into Eigen, so anything below ~1.0x is overhead we added), then layer_norm
// and softmax bandwidth in GB/s (bytes that must move: read x, write y).
//
// Usage: cpu_ops [--quick]     (--quick: fewer repeats, for smoke tests)
// Threads follow OMP_NUM_THREADS, for both sides alike.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tensor/backend.h"
#include "tensor/cpu/gemm_kernel.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

using namespace mms;

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Best time of `fn` over repeats: one warm-up call, then repeats until `budget` seconds
// have passed (at least `min_reps`). The best run is the least disturbed by whatever
// else shares the machine.
double best_seconds(const std::function<void()>& fn, double budget, int min_reps) {
  fn();
  double best = 1e30, spent = 0;
  for (int rep = 0; rep < min_reps || spent < budget; ++rep) {
    const double start = now_seconds();
    fn();
    const double elapsed = now_seconds() - start;
    best = std::min(best, elapsed);
    spent += elapsed;
  }
  return best;
}

// A tensor of varied, non-zero values (timing does not care, but NaNs or denormals
// would slow some paths down and make the numbers lie).
Tensor filled(const Shape& shape, uint64_t seed) {
  Tensor t = empty(shape, DType::Float32);
  cpu_backend().random(RandomKind::Uniform, seed, 0, -1.0, 1.0, t);
  return t;
}

const char* gemm_isa_label() {
  const char* isa = cpu::gemm::isa_in_use();
  if (std::strcmp(isa, "avx512") == 0) return "AVX-512 (float32: our kernel where it takes the shape)";
  if (std::strcmp(isa, "avx512-eigen") == 0) return "AVX-512 (Eigen's kernels only)";
  return std::strcmp(isa, "avx2+fma") == 0 ? "AVX2+FMA" : "this build's flags";
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const double budget = quick ? 0.05 : 1.0;
  const int min_reps = quick ? 1 : 3;
  Backend& cpu = cpu_backend();

  std::printf("mmscale CPU kernels, float32, %d OpenMP threads (Eigen %d.%d.%d, %d threads)\n\n",
              omp_get_max_threads(), EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
              EIGEN_MINOR_VERSION, Eigen::nbThreads());

  // bmm may run an AVX2+FMA build of Eigen (tensor/cpu/gemm_avx2.cpp) while the Eigen
  // column is this program's own build; say which, so the ratio is read correctly.
  std::printf("bmm runs the GEMM built for: %s; the Eigen column uses: %s\n\n",
              gemm_isa_label(), Eigen::SimdInstructionSetsInUse());
  std::printf("%-28s %12s %14s %8s\n", "GEMM (M = N = K)", "bmm GFLOP/s", "Eigen GFLOP/s", "ratio");
  for (int64_t n : {512, 1024, 2048}) {
    const double flops = 2.0 * n * n * n;
    Tensor a = filled({1, n, n}, 1), b = filled({1, n, n}, 2), c = empty({1, n, n});
    const double ours = best_seconds([&] { cpu.bmm(a, b, c, false, false, 1.0, 0.0); }, budget,
                                     min_reps);
    // Eigen's own product on plain (column-major) matrices of the same size
    Eigen::MatrixXf ea = Eigen::MatrixXf::Random(n, n), eb = Eigen::MatrixXf::Random(n, n);
    Eigen::MatrixXf ec(n, n);
    const double eigen = best_seconds([&] { ec.noalias() = ea * eb; }, budget, min_reps);
    std::printf("%-28s %12.1f %14.1f %7.2fx\n", (std::to_string(n) + " x " + std::to_string(n)).c_str(),
                flops / ours * 1e-9, flops / eigen * 1e-9, eigen / ours);
  }
  // The transposed layouts a linear layer uses (x W^T) and its weight gradient (dY^T X).
  {
    const int64_t m = 1024, k = 768, n = 3072;
    const double flops = 2.0 * m * n * k;
    Tensor x = filled({1, m, k}, 3), w = filled({1, n, k}, 4), y = empty({1, m, n});
    const double fwd = best_seconds([&] { cpu.bmm(x, w, y, false, true, 1.0, 0.0); }, budget,
                                    min_reps);
    Tensor gw = empty({1, n, k});
    const double wgrad = best_seconds([&] { cpu.bmm(y, x, gw, true, false, 1.0, 0.0); }, budget,
                                      min_reps);
    std::printf("%-28s %12.1f\n", "linear 1024x768 @ W^T", flops / fwd * 1e-9);
    std::printf("%-28s %12.1f\n", "weight grad dY^T X", flops / wgrad * 1e-9);
  }
  // The ViT-B/32 image tower's linear layers at batch 8 (400 token rows), each over 12
  // different weights in turn as the tower's 12 layers are (so the weights come from
  // memory, not cache): tools/bench_linear_torch.py times the same with PyTorch.
  {
    struct LinearCase {
      const char* name;
      int64_t in, out;
    };
    const int64_t rows = 400, layers = 12;
    for (LinearCase lc : {LinearCase{"ViT b8 qkv 400x768x768", 768, 768},
                          LinearCase{"ViT b8 fc1 400x768x3072", 768, 3072},
                          LinearCase{"ViT b8 fc2 400x3072x768", 3072, 768}}) {
      Tensor x = filled({rows, lc.in}, 13), bias = filled({lc.out}, 14);
      std::vector<Tensor> weights;
      for (int64_t l = 0; l < layers; ++l) weights.push_back(filled({lc.out, lc.in}, 15 + static_cast<uint64_t>(l)));
      Tensor y = empty({rows, lc.out});
      const double t = best_seconds(
          [&] {
            for (const Tensor& w : weights) y = ops::linear(x, w, bias);
          },
          budget, min_reps);
      std::printf("%-28s %12.1f\n", lc.name, 2.0 * rows * lc.in * lc.out * layers / t * 1e-9);
    }
  }
  // A batch of attention-sized products (batch-parallel path).
  {
    const int64_t batches = 96, l = 77, d = 64;
    const double flops = 2.0 * batches * l * l * d;
    Tensor q = filled({batches, l, d}, 5), k = filled({batches, l, d}, 6), s = empty({batches, l, l});
    const double t = best_seconds([&] { cpu.bmm(q, k, s, false, true, 1.0, 0.0); }, budget,
                                  min_reps);
    std::printf("%-28s %12.1f\n", "96 x (77x64 @ 64x77)", flops / t * 1e-9);
  }

  std::printf("\n%-28s %12s\n", "row kernels [M, N]", "GB/s");
  struct RowCase {
    const char* name;
    int64_t rows, cols;
  };
  for (RowCase rc : {RowCase{"layer_norm 8192 x 768", 8192, 768},
                     RowCase{"layer_norm 4096 x 3072", 4096, 3072}}) {
    Tensor x = filled({rc.rows, rc.cols}, 7), w = filled({rc.cols}, 8), bias = filled({rc.cols}, 9);
    Tensor y = empty({rc.rows, rc.cols}), mean = empty({rc.rows}), rstd = empty({rc.rows});
    const double t = best_seconds([&] { cpu.layer_norm(x, w, bias, 1e-5, y, mean, rstd); },
                                  budget, min_reps);
    const double bytes = 2.0 * rc.rows * rc.cols * 4;  // read x, write y
    std::printf("%-28s %12.2f\n", rc.name, bytes / t * 1e-9);
  }
  {
    const int64_t rows = 8192, cols = 768;
    Tensor x = filled({rows, cols}, 10), g = filled({rows, cols}, 11), w = filled({cols}, 12);
    Tensor y = empty({rows, cols}), mean = empty({rows}), rstd = empty({rows});
    cpu.layer_norm(x, w, Tensor(), 1e-5, y, mean, rstd);
    Tensor gx = empty({rows, cols}), gw = empty({cols}), gb = empty({cols});
    const double t = best_seconds(
        [&] { cpu.layer_norm_backward(g, x, w, mean, rstd, Tensor(), gx, gw, gb); }, budget, min_reps);
    const double bytes = 3.0 * rows * cols * 4;  // read grad_y and x, write grad_x
    std::printf("%-28s %12.2f\n", "layer_norm bwd 8192 x 768", bytes / t * 1e-9);
  }
  for (RowCase rc : {RowCase{"softmax 8192 x 1024", 8192, 1024},
                     RowCase{"softmax 12 x 77 x 77 rows", 12 * 77 * 64, 77}}) {
    Tensor x = filled({rc.rows, rc.cols}, 13), y = empty({rc.rows, rc.cols});
    const double t = best_seconds([&] { cpu.softmax_last(x, y, false); }, budget, min_reps);
    const double bytes = 2.0 * rc.rows * rc.cols * 4;
    std::printf("%-28s %12.2f\n", rc.name, bytes / t * 1e-9);
  }
  return 0;
}
