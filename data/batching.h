// Listwise batches for MM-SCALE: B images per batch, each paired with up to K of its
// scenarios. The image goes through the vision tower once and meets its K texts.
//
//   ListSampler   which (image, scenarios) go in which batch: seeded, deterministic,
//                 a pure function of (seed, step) so a resumed run sees the same data.
//   make_batch    fills the plain host buffers of one batch (decode + preprocess +
//                 pre-tokenised texts).
//   BatchLoader   runs make_batch on background threads into a bounded, in-order queue,
//                 with an optional cache of preprocessed images.
//
// Buffers are plain std::vectors, row-major, shapes noted per field; the trainer turns
// them into Tensors. Slots past an image's scenario count are padding: valid = 0, an
// empty text (BOS, EOS, pad...), rating 0, modality 0.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/clip_preprocess.h"
#include "data/mmscale_dataset.h"
#include "data/tokenizer.h"

namespace mms::data {

struct SamplerOptions {
  int64_t batch_lists = 8;     // B: images per batch
  int64_t list_size = 4;       // K: scenarios per image; 0 = all (K = the largest list)
  uint64_t seed = 0;
  bool shuffle = true;         // false: images in dataset order, scenarios in file order
  bool drop_last = false;      // drop a final batch with fewer than B images
  double data_fraction = 1.0;  // keep a seeded subset of the images, (0, 1]
};

// One list: an image and the scenarios (indices into its `scenarios`) it is paired with.
struct ListItem {
  int32_t image = -1;
  std::vector<int32_t> scenarios;
};

class ListSampler {
 public:
  ListSampler(const Dataset& dataset, const SamplerOptions& options);

  int64_t list_size() const { return list_size_; }            // K actually used
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  const std::vector<int32_t>& images() const { return images_; }  // the data_fraction subset
  // Batch `index` of epoch `epoch` (each epoch reshuffles images; an image with more
  // than K scenarios gets K drawn without replacement, fresh each epoch).
  std::vector<ListItem> batch(int64_t epoch, int64_t index) const;
  // The global step's batch: epoch = step / batches_per_epoch.
  std::vector<ListItem> batch_at_step(int64_t step) const;

 private:
  const Dataset& dataset_;
  SamplerOptions options_;
  int64_t list_size_ = 0;
  int64_t batches_per_epoch_ = 0;
  std::vector<int32_t> images_;
};

struct ListBatch {
  int64_t step = 0;
  int64_t batch_lists = 0;               // B (the last batch of an epoch may be smaller)
  int64_t list_size = 0;                 // K
  int64_t image_size = 0;                // S
  int64_t context_length = 0;            // L
  std::vector<float> pixels;             // [B, 3, S, S] CLIP-normalised
  std::vector<int32_t> input_ids;        // [B * K, L]
  std::vector<int32_t> attention_mask;   // [B * K, L]
  std::vector<float> ratings;            // [B, K] mean_rating, 0 where invalid
  std::vector<int32_t> modality;         // [B, K] Modality as int, 0 where invalid
  std::vector<uint8_t> valid;            // [B, K] 1 = a real scenario
  std::vector<int32_t> image_index;      // [B] into dataset.images
  std::vector<int32_t> scenario_index;   // [B, K] into that image's scenarios, -1 invalid
  int64_t num_valid() const;
};

// Scenario texts tokenised once: tokens[image][scenario] (each context_length long).
struct TokenizedDataset {
  int64_t context_length = 0;
  std::vector<std::vector<TokenizedText>> tokens;
  TokenizedText empty;  // the padding text
};
TokenizedDataset tokenize_dataset(const Dataset& dataset, const ClipTokenizer& tokenizer, int64_t context_length);

// Every scenario text, for training a BPE vocabulary on the data.
std::vector<std::string> dataset_texts(const Dataset& dataset);

// Thread-safe cache of preprocessed images (CHW float), bounded in bytes; when full,
// new images are simply not cached (no eviction churn).
class ImageCache {
 public:
  explicit ImageCache(size_t max_bytes) : max_bytes_(max_bytes) {}
  std::shared_ptr<const std::vector<float>> get(int32_t image) const;
  void put(int32_t image, std::shared_ptr<const std::vector<float>> pixels);
  size_t bytes() const;

 private:
  size_t max_bytes_;
  size_t bytes_ = 0;
  mutable std::mutex mutex_;
  std::map<int32_t, std::shared_ptr<const std::vector<float>>> entries_;
};

// Builds one batch synchronously. `cache` may be null.
ListBatch make_batch(const Dataset& dataset, const TokenizedDataset& tokens, const std::vector<ListItem>& items,
                     int64_t list_size, const ClipImageConfig& image_config, ImageCache* cache, int64_t step = 0);

// ---- trimming the texts of a batch ----------------------------------------------------
//
// trim_text_to_longest cuts input_ids / attention_mask from [B*K, L] to [B*K, L'], L' the
// longest real sequence of the batch (the last position with attention_mask = 1, + 1;
// at least 1, never more than L), and sets context_length = L'. The tokens are padded to
// a fixed L (77 for a CLIP checkpoint, 20 for the built-in default) although real
// scenarios are much shorter, and the text tower's cost is linear (MLP, projections) to
// quadratic (attention) in the length.
//
// Why the text tower's outputs do not change (vlm/clip_model.h, CLIPTextTransformer):
//   * attention is causal: a token at position i attends to keys 0..i only, so the state
//     of every kept position depends only on kept positions, never on the cut ones
//     (which are all padding: every row's real tokens end before L');
//   * padding keys inside the kept window (shorter rows) stay masked by the same
//     attention_mask values as before;
//   * the pooled token -- argmax(input_ids) or the first eos, text_pool_positions -- is
//     the eos that ClipTokenizer::encode puts last among a row's real tokens (padding is
//     eos too, and both rules pick the first), so it lies inside the kept window and is
//     pooled from the same position;
//   * position embeddings are indexed 0..L'-1: the same rows of the table the kept
//     positions used before; LayerNorm, MLP and projections act per token.
// So the pooled features and the scores are the same numbers in exact arithmetic. In
// float32 they agree to rounding, not always bit for bit: the GEMMs see B*K*L' token rows
// instead of B*K*L, and the CPU's (Eigen) computes the rows of a partial tile at the end
// with another kernel, so a real token's dot products may be summed in another order.
// Measured on the CPU: tests/test_text_trim.cpp's batch bit-identical; the default run's
// test split 476 of 521 scores bit-identical, the rest within 4.8e-7 (one float32 ulp at
// 4), every ranking metric the same. The backward's weight gradients sum over fewer token
// rows (the dropped ones contribute exact zeros): equal up to rounding too, so a long run
// with and without trimming drifts apart like two runs on different hardware.
//
// The precondition is the tokenizer's: a real text ends with its eos inside the real
// tokens (true of every ClipTokenizer::encode output, truncation included). Rows that
// are all padding (attention_mask all 0) count as length 0.
struct TextTrim {
  int64_t rows = 0;         // B*K texts
  int64_t from_length = 0;  // L before
  int64_t to_length = 0;    // L' after
  int64_t tokens_before() const { return rows * from_length; }
  int64_t tokens_after() const { return rows * to_length; }
  int64_t tokens_saved() const { return rows * (from_length - to_length); }
};

// The length trim_text_to_longest would cut `batch` to.
int64_t longest_real_text(const ListBatch& batch);
TextTrim trim_text_to_longest(ListBatch& batch);

// (i, j) slot pairs within each list with rating_i > rating_j + min_gap, for pairwise
// losses; flat slot index = b * K + k.
std::vector<std::pair<int32_t, int32_t>> ranked_pairs(const ListBatch& batch, double min_gap = 0.0);

struct LoaderOptions {
  SamplerOptions sampler;
  ClipImageConfig image;
  int64_t context_length = 77;
  int threads = 2;                          // background workers
  int64_t queue_capacity = 4;               // batches built ahead of the consumer
  size_t cache_max_bytes = size_t(1) << 30;  // 0 disables the preprocessed-image cache
};

// Background prefetch: batches for steps [first_step, first_step + num_steps) are
// built by `threads` workers and handed out strictly in step order. A worker's error
// (e.g. a corrupt image, naming the file) is rethrown from next(), after the batches
// of earlier steps. The dataset must outlive the loader; the tokenizer is used only in
// the constructor (all texts are tokenised up front).
class BatchLoader {
 public:
  BatchLoader(const Dataset& dataset, const ClipTokenizer& tokenizer, const LoaderOptions& options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  const ListSampler& sampler() const { return sampler_; }
  void start(int64_t first_step, int64_t num_steps);  // stops any previous run first
  bool next(ListBatch& out);                          // false once all steps were handed out
  void stop();
  const ImageCache* cache() const { return cache_.get(); }

 private:
  void worker();

  const Dataset& dataset_;
  LoaderOptions options_;
  ListSampler sampler_;
  TokenizedDataset tokens_;
  std::unique_ptr<ImageCache> cache_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> threads_;
  std::map<int64_t, ListBatch> ready_;
  int64_t next_to_build_ = 0, next_to_hand_out_ = 0, end_step_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
  int64_t error_step_ = 0;  // the step whose build failed: batches before it still arrive
};

}  // namespace mms::data
