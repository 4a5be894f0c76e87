// clip_cpu: CPU throughput of the ViT-B/32 CLIP towers (random weights, float32,
// inference: no graph), the numbers tools/bench_clip_torch.py measures for PyTorch.
//
//   clip_cpu [--image-batch 8] [--text-batch 32] [--text-length 77] [--iters 5]
//            [--device cpu|cuda]
//
// Image tower: pixel_values [8, 3, 224, 224] -> image features (vision_model +
// visual_projection). Text tower: input_ids [32, 77] (no padding; causal mask) -> text
// features. Prints the median of --iters timed runs after one warm-up run. Threads:
// OMP_NUM_THREADS (run both benches with the same count). With --device cuda the same
// forward runs on the GPU; each timed run ends by copying the features to the host,
// which waits for the stream.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <string>
#include <cstdio>
#include <vector>

#include "autograd/node.h"
#include "vlm/clip_model.h"

namespace {

template <typename F>
double median_seconds(int iters, F&& run) {
  run();  // warm-up: allocator, page faults, caches
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    auto start = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU throughput of the ViT-B/32 CLIP towers"};
  int64_t image_batch = 8, text_batch = 32, text_length = 77;
  int iters = 5;
  std::string device_name = "cpu";
  app.add_option("--image-batch", image_batch)->check(CLI::PositiveNumber);
  app.add_option("--text-batch", text_batch)->check(CLI::PositiveNumber);
  app.add_option("--text-length", text_length)->check(CLI::Range(int64_t{2}, int64_t{77}));
  app.add_option("--iters", iters)->check(CLI::PositiveNumber);
  app.add_option("--device", device_name, "cpu, cuda or cuda:N");
  CLI11_PARSE(app, argc, argv);
  const mms::Device device = mms::Device::parse(device_name);

  mms::vlm::CLIPConfig config;  // the class defaults are ViT-B/32
  mms::vlm::CLIPModel model(config, /*seed=*/0);
  model.eval();
  model.to(device);
  mms::NoGradGuard no_grad;

  mms::Tensor pixels = mms::randn({image_batch, 3, 224, 224}, 1).to(device);
  std::vector<int64_t> ids(text_batch * text_length);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 1 + static_cast<int64_t>((i * 2654435761ull) % 49000);
  for (int64_t r = 0; r < text_batch; ++r) ids[r * text_length + text_length - 1] = config.text.eos_token_id;
  mms::Tensor input_ids = mms::from_vector(ids, {text_batch, text_length}).to(device);
  mms::Tensor mask = mms::ones({text_batch, text_length}, mms::DType::Int64).to(device);

  const double image_s = median_seconds(iters, [&] { model.image_features(pixels).to(mms::Device::cpu()); });
  const double text_s = median_seconds(iters, [&] { model.text_features(input_ids, mask).to(mms::Device::cpu()); });
  std::printf("mmscale %s float32, %d threads, ViT-B/32 random weights, median of %d\n", device.str().c_str(),
              omp_get_max_threads(), iters);
  std::printf("image tower: batch %lld, %.3f s/batch, %.2f images/s\n", static_cast<long long>(image_batch), image_s,
              image_batch / image_s);
  std::printf("text tower:  batch %lld x %lld tokens, %.3f s/batch, %.2f texts/s\n",
              static_cast<long long>(text_batch), static_cast<long long>(text_length), text_s, text_batch / text_s);
  return 0;
}
