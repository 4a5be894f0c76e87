#include "data/batching.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "data/rng.h"
#include "tensor/error.h"

namespace mms::data {

// ---- sampler --------------------------------------------------------------------------

ListSampler::ListSampler(const Dataset& dataset, const SamplerOptions& options)
    : dataset_(dataset), options_(options) {
  MMS_CHECK(options.batch_lists >= 1, "sampler: batch_lists must be >= 1, got ", options.batch_lists);
  MMS_CHECK(options.list_size >= 0, "sampler: list_size must be >= 0, got ", options.list_size);
  MMS_CHECK(options.data_fraction > 0 && options.data_fraction <= 1, "sampler: data_fraction must be in (0, 1], got ",
            options.data_fraction);
  MMS_CHECK(!dataset.images.empty(), "sampler: the dataset has no images");
  for (size_t i = 0; i < dataset.images.size(); ++i) images_.push_back(static_cast<int32_t>(i));
  if (options.data_fraction < 1.0) {
    // A seeded subset, independent of the epoch shuffles; kept in dataset order.
    SplitMix64 rng(options.seed, 0xF4AC7102ull);
    rng.shuffle(images_);
    const auto keep = std::max<size_t>(1, static_cast<size_t>(std::ceil(options.data_fraction * images_.size())));
    images_.resize(keep);
    std::sort(images_.begin(), images_.end());
  }
  list_size_ = options.list_size;
  if (list_size_ == 0)
    for (int32_t i : images_) list_size_ = std::max<int64_t>(list_size_, dataset.images[i].scenarios.size());
  const auto n = static_cast<int64_t>(images_.size());
  batches_per_epoch_ = options.drop_last ? n / options.batch_lists : (n + options.batch_lists - 1) / options.batch_lists;
  MMS_CHECK(batches_per_epoch_ >= 1, "sampler: ", n, " images cannot fill one batch of ", options.batch_lists,
            " with drop_last");
}

std::vector<ListItem> ListSampler::batch(int64_t epoch, int64_t index) const {
  MMS_CHECK(epoch >= 0 && index >= 0 && index < batches_per_epoch_, "sampler: batch ", index, " of epoch ", epoch,
            " out of range (", batches_per_epoch_, " per epoch)");
  std::vector<int32_t> order = images_;
  SplitMix64 epoch_rng(options_.seed, static_cast<uint64_t>(epoch) * 2 + 1);
  if (options_.shuffle) epoch_rng.shuffle(order);
  const auto begin = static_cast<size_t>(index * options_.batch_lists);
  const size_t end = std::min(order.size(), begin + static_cast<size_t>(options_.batch_lists));
  std::vector<ListItem> items;
  for (size_t pos = begin; pos < end; ++pos) {
    ListItem item;
    item.image = order[pos];
    const auto n = static_cast<int32_t>(dataset_.images[item.image].scenarios.size());
    std::vector<int32_t> all(n);
    for (int32_t k = 0; k < n; ++k) all[k] = k;
    if (options_.shuffle) {
      // Per (epoch, image) stream: the draw does not depend on batch composition.
      SplitMix64 rng(options_.seed ^ (static_cast<uint64_t>(item.image) * 0x9E3779B97F4A7C15ull),
                     static_cast<uint64_t>(epoch) * 2 + 2);
      rng.shuffle(all);
    }
    if (static_cast<int64_t>(all.size()) > list_size_) all.resize(list_size_);
    item.scenarios = std::move(all);
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<ListItem> ListSampler::batch_at_step(int64_t step) const {
  MMS_CHECK(step >= 0, "sampler: negative step ", step);
  return batch(step / batches_per_epoch_, step % batches_per_epoch_);
}

// ---- building batches ------------------------------------------------------------------

int64_t ListBatch::num_valid() const {
  int64_t n = 0;
  for (uint8_t v : valid) n += v;
  return n;
}

TokenizedDataset tokenize_dataset(const Dataset& dataset, const ClipTokenizer& tokenizer, int64_t context_length) {
  TokenizedDataset out;
  out.context_length = context_length;
  out.empty = tokenizer.encode("", context_length);
  out.tokens.resize(dataset.images.size());
  for (size_t i = 0; i < dataset.images.size(); ++i)
    for (const Scenario& s : dataset.images[i].scenarios) out.tokens[i].push_back(tokenizer.encode(s.text, context_length));
  return out;
}

std::vector<std::string> dataset_texts(const Dataset& dataset) {
  std::vector<std::string> texts;
  for (const auto& im : dataset.images)
    for (const auto& s : im.scenarios) texts.push_back(s.text);
  return texts;
}

std::shared_ptr<const std::vector<float>> ImageCache::get(int32_t image) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(image);
  return it == entries_.end() ? nullptr : it->second;
}

void ImageCache::put(int32_t image, std::shared_ptr<const std::vector<float>> pixels) {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t size = pixels->size() * sizeof(float);
  if (bytes_ + size > max_bytes_ || entries_.count(image)) return;
  bytes_ += size;
  entries_.emplace(image, std::move(pixels));
}

size_t ImageCache::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

ListBatch make_batch(const Dataset& dataset, const TokenizedDataset& tokens, const std::vector<ListItem>& items,
                     int64_t list_size, const ClipImageConfig& image_config, ImageCache* cache, int64_t step) {
  const auto B = static_cast<int64_t>(items.size());
  const int64_t K = list_size, L = tokens.context_length, S = image_config.crop_size;
  ListBatch batch;
  batch.step = step;
  batch.batch_lists = B;
  batch.list_size = K;
  batch.image_size = S;
  batch.context_length = L;
  batch.pixels.resize(static_cast<size_t>(B * 3 * S * S));
  batch.input_ids.resize(static_cast<size_t>(B * K * L));
  batch.attention_mask.resize(static_cast<size_t>(B * K * L));
  batch.ratings.assign(static_cast<size_t>(B * K), 0.0f);
  batch.modality.assign(static_cast<size_t>(B * K), 0);
  batch.valid.assign(static_cast<size_t>(B * K), 0);
  batch.scenario_index.assign(static_cast<size_t>(B * K), -1);
  for (int64_t b = 0; b < B; ++b) {
    const ListItem& item = items[b];
    const ImageRecord& record = dataset.images.at(item.image);
    batch.image_index.push_back(item.image);
    std::shared_ptr<const std::vector<float>> pixels = cache ? cache->get(item.image) : nullptr;
    if (!pixels) {
      auto fresh = std::make_shared<std::vector<float>>(clip_preprocess_file(record.path, image_config));
      pixels = fresh;
      if (cache) cache->put(item.image, fresh);
    }
    std::memcpy(&batch.pixels[b * 3 * S * S], pixels->data(), sizeof(float) * 3 * S * S);
    MMS_CHECK(static_cast<int64_t>(item.scenarios.size()) <= K, "make_batch: list of ", item.scenarios.size(),
              " scenarios exceeds K = ", K);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t slot = b * K + k;
      const TokenizedText* text = &tokens.empty;
      if (k < static_cast<int64_t>(item.scenarios.size())) {
        const int32_t s = item.scenarios[k];
        const Scenario& scenario = record.scenarios.at(s);
        text = &tokens.tokens.at(item.image).at(s);
        batch.ratings[slot] = static_cast<float>(scenario.mean_rating);
        batch.modality[slot] = static_cast<int32_t>(scenario.modality);
        batch.valid[slot] = 1;
        batch.scenario_index[slot] = s;
      }
      std::copy(text->input_ids.begin(), text->input_ids.end(), batch.input_ids.begin() + slot * L);
      std::copy(text->attention_mask.begin(), text->attention_mask.end(), batch.attention_mask.begin() + slot * L);
    }
  }
  return batch;
}

int64_t longest_real_text(const ListBatch& batch) {
  const int64_t L = batch.context_length;
  MMS_CHECK(L >= 0 && batch.input_ids.size() == batch.attention_mask.size() &&
                (L == 0 ? batch.input_ids.empty() : batch.input_ids.size() % static_cast<size_t>(L) == 0),
            "trim_text: input_ids (", batch.input_ids.size(), ") and attention_mask (", batch.attention_mask.size(),
            ") must both hold rows of context_length ", L);
  if (L == 0) return 0;
  const auto rows = static_cast<int64_t>(batch.input_ids.size()) / L;
  int64_t longest = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* mask = &batch.attention_mask[static_cast<size_t>(r * L)];
    // Scan from the right: the last real token decides (a mask that is not a prefix of
    // ones still keeps every real token).
    for (int64_t i = L - 1; i >= longest; --i)
      if (mask[i] != 0) {
        longest = i + 1;
        break;
      }
  }
  return std::clamp<int64_t>(longest, 1, L);
}

TextTrim trim_text_to_longest(ListBatch& batch) {
  const int64_t L = batch.context_length, kept = longest_real_text(batch);
  TextTrim trim;
  trim.rows = L == 0 ? 0 : static_cast<int64_t>(batch.input_ids.size()) / L;
  trim.from_length = L;
  trim.to_length = kept;
  if (kept == L) return trim;
  // In place, row by row: row r's kept prefix moves to r * L', never past where it came from.
  for (int64_t r = 0; r < trim.rows; ++r) {
    const auto from = static_cast<size_t>(r * L), to = static_cast<size_t>(r * kept);
    std::copy(batch.input_ids.begin() + from, batch.input_ids.begin() + from + kept, batch.input_ids.begin() + to);
    std::copy(batch.attention_mask.begin() + from, batch.attention_mask.begin() + from + kept,
              batch.attention_mask.begin() + to);
  }
  batch.input_ids.resize(static_cast<size_t>(trim.rows * kept));
  batch.attention_mask.resize(static_cast<size_t>(trim.rows * kept));
  batch.context_length = kept;
  return trim;
}

std::vector<std::pair<int32_t, int32_t>> ranked_pairs(const ListBatch& batch, double min_gap) {
  std::vector<std::pair<int32_t, int32_t>> pairs;
  const int64_t K = batch.list_size;
  for (int64_t b = 0; b < batch.batch_lists; ++b)
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) {
        const int64_t si = b * K + i, sj = b * K + j;
        if (batch.valid[si] && batch.valid[sj] && batch.ratings[si] > batch.ratings[sj] + min_gap)
          pairs.emplace_back(static_cast<int32_t>(si), static_cast<int32_t>(sj));
      }
  return pairs;
}

// ---- background loader ------------------------------------------------------------------

BatchLoader::BatchLoader(const Dataset& dataset, const ClipTokenizer& tokenizer, const LoaderOptions& options)
    : dataset_(dataset),
      options_(options),
      sampler_(dataset, options.sampler),
      tokens_(tokenize_dataset(dataset, tokenizer, options.context_length)) {
  MMS_CHECK(options.threads >= 1, "loader: threads must be >= 1, got ", options.threads);
  MMS_CHECK(options.queue_capacity >= 1, "loader: queue_capacity must be >= 1, got ", options.queue_capacity);
  if (options.cache_max_bytes > 0) cache_ = std::make_unique<ImageCache>(options.cache_max_bytes);
}

BatchLoader::~BatchLoader() { stop(); }

void BatchLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  ready_.clear();
  stopping_ = false;
}

void BatchLoader::start(int64_t first_step, int64_t num_steps) {
  MMS_CHECK(first_step >= 0 && num_steps >= 0, "loader: bad step range ", first_step, " + ", num_steps);
  stop();
  next_to_build_ = next_to_hand_out_ = first_step;
  end_step_ = first_step + num_steps;
  error_ = nullptr;
  for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this] { worker(); });
}

void BatchLoader::worker() {
  for (;;) {
    int64_t step;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Bounded: build at most queue_capacity batches ahead of the consumer.
      changed_.wait(lock, [this] {
        return stopping_ || error_ || next_to_build_ >= end_step_ ||
               next_to_build_ < next_to_hand_out_ + options_.queue_capacity;
      });
      if (stopping_ || error_ || next_to_build_ >= end_step_) return;
      step = next_to_build_++;
    }
    try {
      ListBatch batch = make_batch(dataset_, tokens_, sampler_.batch_at_step(step), sampler_.list_size(),
                                   options_.image, cache_.get(), step);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(step, std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_ || step < error_step_) {
        error_ = std::current_exception();
        error_step_ = step;
      }
    }
    changed_.notify_all();
  }
}

bool BatchLoader::next(ListBatch& out) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (next_to_hand_out_ >= end_step_) return false;
  MMS_CHECK(!threads_.empty(), "loader: next() called before start()");
  // Steps are claimed in order, so every step before a failed one is still delivered.
  changed_.wait(lock, [this] { return ready_.count(next_to_hand_out_) || (error_ && error_step_ == next_to_hand_out_); });
  if (!ready_.count(next_to_hand_out_)) {
    std::exception_ptr e = error_;
    lock.unlock();
    stop();
    std::rethrow_exception(e);
  }
  auto it = ready_.find(next_to_hand_out_);
  out = std::move(it->second);
  ready_.erase(it);
  ++next_to_hand_out_;
  lock.unlock();
  changed_.notify_all();
  return true;
}

}  // namespace mms::data
