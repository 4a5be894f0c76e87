// data bench: how fast real inputs reach the model.
//
//   data [--images 64] [--size 224] [--texts 20000] [--threads N] [--vocab PATH]
//
// Reports images/s for decode + CLIP preprocess of 512x512 PNGs and texts/s for CLIP
// tokenisation, each single-threaded and with a pool of N threads (default: hardware
// concurrency). Images are written once to a temp dir; files are read from the page
// cache, so this measures CPU cost, not the disk.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <thread>

#include "data/bpe_trainer.h"
#include "data/clip_preprocess.h"
#include "data/image.h"
#include "data/rng.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;
using namespace mms::data;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs work(i) for i in [0, n) on `threads` threads (1 = the calling thread); seconds.
double timed_pool(int64_t n, int threads, const std::function<void(int64_t)>& work) {
  auto t0 = std::chrono::steady_clock::now();
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i) work(i);
  } else {
    std::atomic<int64_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        for (int64_t i; (i = next++) < n;) work(i);
      });
    for (auto& th : pool) th.join();
  }
  return seconds_since(t0);
}

// A photo-like 512x512 image: gradients, blobs and noise (PNG-compresses like a photo).
ImageU8 photo_like(int64_t side, uint64_t seed) {
  SplitMix64 rng(seed);
  ImageU8 im{side, side, 3, std::vector<uint8_t>(static_cast<size_t>(side * side * 3))};
  const double cx = rng.uniform() * side, cy = rng.uniform() * side;
  for (int64_t y = 0; y < side; ++y)
    for (int64_t x = 0; x < side; ++x) {
      const double d = std::hypot(x - cx, y - cy) / side;
      for (int c = 0; c < 3; ++c) {
        const double v = 128 + 100 * std::sin(d * (8 + 3 * c)) + 20 * (rng.uniform() - 0.5);
        im.pixels[(y * side + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  return im;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"data bench: images/s (decode + CLIP preprocess) and texts/s (tokenise)"};
  int64_t num_images = 64, size = 224, num_texts = 20000;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string vocab;
  app.add_option("--images", num_images, "number of 512x512 PNGs");
  app.add_option("--size", size, "CLIP image size");
  app.add_option("--texts", num_texts, "number of texts to tokenise");
  app.add_option("--threads", threads, "pool size for the threaded runs");
  app.add_option("--vocab", vocab, "tokenizer vocabulary (default: trained on the bench texts)");
  CLI11_PARSE(app, argc, argv);

  fs::path dir = fs::temp_directory_path() / "mms_bench_data";
  fs::create_directories(dir);
  std::vector<std::string> paths;
  for (int64_t i = 0; i < num_images; ++i) {
    paths.push_back((dir / ("img" + std::to_string(i) + ".png")).string());
    if (!fs::exists(paths.back())) write_png(paths.back(), photo_like(512, static_cast<uint64_t>(i)));
  }
  ClipImageConfig config;
  config.size = config.crop_size = size;
  std::vector<double> sink(static_cast<size_t>(num_images));
  auto preprocess = [&](int64_t i) { sink[i] = clip_preprocess_file(paths[i], config)[0]; };
  preprocess(0);  // warm the page cache and code
  const double img1 = timed_pool(num_images, 1, preprocess);
  const double imgN = timed_pool(num_images, threads, preprocess);

  // Texts: templated sentences with a varied vocabulary, like scenario descriptions.
  static const char* kWords[] = {"someone", "helps", "an", "elderly", "woman", "steals", "wallet", "from",
                                 "sleeping", "passenger", "child", "shares", "lunch", "with", "friend", "café",
                                 "don't", "kicks", "dog", "street", "returns", "lost", "phone", "owner"};
  std::vector<std::string> texts;
  SplitMix64 rng(7);
  for (int64_t i = 0; i < num_texts; ++i) {
    std::string t;
    const int64_t n = 6 + rng.below(12);
    for (int64_t w = 0; w < n; ++w) t += std::string(w ? " " : "") + kWords[rng.below(24)];
    t += " #" + std::to_string(i);  // digits make many texts unique
    texts.push_back(std::move(t));
  }
  // A fresh tokenizer per run, so both start with a cold word cache (the texts share
  // most words, so the cache is what a long run sees after the first few hundred).
  const BpeVocab bpe = vocab.empty() ? train_bpe(texts, {.vocab_size = 2000}) : load_bpe_vocab(vocab);
  std::atomic<int64_t> tokens{0};
  auto run_tokenizer = [&](int pool) {
    ClipTokenizer tokenizer(bpe);
    return timed_pool(num_texts, pool, [&](int64_t i) {
      tokens += static_cast<int64_t>(tokenizer.encode(texts[i], 77).input_ids.size());
    });
  };
  const double txt1 = run_tokenizer(1);
  const double txtN = run_tokenizer(threads);

  std::printf("decode+preprocess 512x512 PNG -> %lldx%lld: %.1f images/s (1 thread), %.1f images/s (%d threads)\n",
              static_cast<long long>(size), static_cast<long long>(size), num_images / img1, num_images / imgN, threads);
  std::printf("tokenize (context 77, %s vocab): %.0f texts/s (1 thread), %.0f texts/s (%d threads)\n",
              vocab.empty() ? "trained 2000-token" : vocab.c_str(), num_texts / txt1, num_texts / txtN, threads);
  return sink[0] > 1e9 ? 1 : 0;
}
