// Batching: list shapes and padding, sampling without replacement, determinism per
// seed (and per step, for resume), data_fraction subsets, the background loader equal
// to the synchronous path, worker errors reaching the caller with the file name, and
// trimming a batch's texts to its longest real one.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/batching.h"
#include "data/bpe_trainer.h"
#include "data/synthetic.h"
#include "tensor/error.h"

using namespace mms::data;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  fs::path root;
  Dataset dataset;
  std::unique_ptr<ClipTokenizer> tokenizer;
};

const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.root = fs::temp_directory_path() / "mms_test_batching";
    fs::remove_all(x.root);
    write_synthetic_dataset(x.root.string(), {.num_images = 23, .seed = 11, .image_size = 32,
                                              .min_scenarios = 2, .max_scenarios = 6});
    x.dataset = load_mmscale_all(x.root.string());
    x.tokenizer = std::make_unique<ClipTokenizer>(train_bpe(dataset_texts(x.dataset), {.vocab_size = 700}));
    return x;
  }();
  return f;
}

ClipImageConfig small_images() {
  ClipImageConfig c;
  c.size = c.crop_size = 24;
  return c;
}

}  // namespace

TEST_CASE("sampler: every image once per epoch, K without replacement, seeded") {
  const Fixture& f = fixture();
  ListSampler sampler(f.dataset, {.batch_lists = 5, .list_size = 4, .seed = 1});
  CHECK(sampler.batches_per_epoch() == 5);  // 23 images -> 4 full + 1 of 3
  for (int64_t epoch : {0, 1}) {
    std::multiset<int32_t> seen;
    for (int64_t i = 0; i < sampler.batches_per_epoch(); ++i) {
      auto items = sampler.batch(epoch, i);
      CHECK(items.size() == (i < 4 ? 5u : 3u));
      for (const auto& item : items) {
        seen.insert(item.image);
        const auto n = f.dataset.images[item.image].scenarios.size();
        CHECK(item.scenarios.size() == std::min<size_t>(n, 4));
        std::set<int32_t> unique(item.scenarios.begin(), item.scenarios.end());
        CHECK(unique.size() == item.scenarios.size());
        for (int32_t s : item.scenarios) CHECK(s < static_cast<int32_t>(n));
      }
    }
    CHECK(seen.size() == 23);
    CHECK(std::set<int32_t>(seen.begin(), seen.end()).size() == 23);
  }
  ListSampler same(f.dataset, {.batch_lists = 5, .list_size = 4, .seed = 1});
  ListSampler other(f.dataset, {.batch_lists = 5, .list_size = 4, .seed = 2});
  bool differs = false;
  for (int64_t step = 0; step < 12; ++step) {
    auto a = sampler.batch_at_step(step), b = same.batch_at_step(step), c = other.batch_at_step(step);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].image == b[i].image);
      CHECK(a[i].scenarios == b[i].scenarios);
    }
    differs = differs || a[0].image != c[0].image;
  }
  CHECK(differs);
  CHECK(sampler.batch(0, 0)[0].image != sampler.batch(1, 0)[0].image);  // reshuffled (this seed)
}

TEST_CASE("sampler: data_fraction keeps a seeded subset; list_size 0 takes all; unshuffled order") {
  const Fixture& f = fixture();
  ListSampler half(f.dataset, {.batch_lists = 4, .list_size = 4, .seed = 3, .data_fraction = 0.5});
  CHECK(half.images().size() == 12);  // ceil(0.5 * 23)
  ListSampler half_again(f.dataset, {.batch_lists = 4, .list_size = 4, .seed = 3, .data_fraction = 0.5});
  CHECK(half.images() == half_again.images());
  ListSampler all(f.dataset, {.batch_lists = 23, .list_size = 0, .shuffle = false});
  CHECK(all.list_size() == 6);
  auto items = all.batch(0, 0);
  for (size_t i = 0; i < items.size(); ++i) {
    CHECK(items[i].image == static_cast<int32_t>(i));
    CHECK(items[i].scenarios.size() == f.dataset.images[i].scenarios.size());
  }
  CHECK_THROWS_AS(ListSampler(f.dataset, {.data_fraction = 0.0}), mms::Error);
  CHECK_THROWS_AS(ListSampler(f.dataset, {.batch_lists = 0}), mms::Error);
}

TEST_CASE("make_batch: shapes, padding slots, values from the dataset") {
  const Fixture& f = fixture();
  TokenizedDataset tokens = tokenize_dataset(f.dataset, *f.tokenizer, 16);
  ListSampler sampler(f.dataset, {.batch_lists = 6, .list_size = 5, .seed = 4});
  ListBatch batch = make_batch(f.dataset, tokens, sampler.batch(0, 0), 5, small_images(), nullptr);
  CHECK(batch.pixels.size() == 6u * 3 * 24 * 24);
  CHECK(batch.input_ids.size() == 6u * 5 * 16);
  CHECK(batch.ratings.size() == 30u);
  int64_t padded = 0;
  for (int64_t b = 0; b < 6; ++b) {
    const ImageRecord& im = f.dataset.images[batch.image_index[b]];
    for (int64_t k = 0; k < 5; ++k) {
      const int64_t slot = b * 5 + k;
      if (!batch.valid[slot]) {
        ++padded;
        CHECK(batch.ratings[slot] == 0.0f);
        CHECK(batch.input_ids[slot * 16] == f.tokenizer->bos_id());
        CHECK(batch.input_ids[slot * 16 + 1] == f.tokenizer->eos_id());
        CHECK(batch.attention_mask[slot * 16 + 2] == 0);
        continue;
      }
      const Scenario& s = im.scenarios[batch.scenario_index[slot]];
      CHECK(batch.ratings[slot] == doctest::Approx(s.mean_rating));
      CHECK(batch.modality[slot] == static_cast<int32_t>(s.modality));
      std::vector<int32_t> ids(batch.input_ids.begin() + slot * 16, batch.input_ids.begin() + slot * 16 + 16);
      CHECK(ids == f.tokenizer->encode(s.text, 16).input_ids);
    }
  }
  CHECK(batch.num_valid() + padded == 30);
  std::vector<float> first = clip_preprocess_file(f.dataset.images[batch.image_index[0]].path, small_images());
  CHECK(std::equal(first.begin(), first.end(), batch.pixels.begin()));
  for (auto [i, j] : ranked_pairs(batch)) {
    CHECK(i / 5 == j / 5);
    CHECK(batch.ratings[i] > batch.ratings[j]);
  }
}

TEST_CASE("loader: background threads give the synchronous batches, in order, across epochs") {
  const Fixture& f = fixture();
  LoaderOptions options;
  options.sampler = {.batch_lists = 4, .list_size = 3, .seed = 5};
  options.image = small_images();
  options.context_length = 12;
  options.threads = 3;
  options.queue_capacity = 2;
  BatchLoader loader(f.dataset, *f.tokenizer, options);
  TokenizedDataset tokens = tokenize_dataset(f.dataset, *f.tokenizer, 12);
  const int64_t steps = loader.sampler().batches_per_epoch() * 2 + 1;
  loader.start(3, steps);  // as if resuming at step 3
  ListBatch batch;
  int64_t got = 0;
  while (loader.next(batch)) {
    const int64_t step = 3 + got++;
    CHECK(batch.step == step);
    ListBatch want = make_batch(f.dataset, tokens, loader.sampler().batch_at_step(step), 3, options.image, nullptr, step);
    CHECK(batch.image_index == want.image_index);
    CHECK(batch.scenario_index == want.scenario_index);
    CHECK(batch.input_ids == want.input_ids);
    CHECK(batch.pixels == want.pixels);
  }
  CHECK(got == steps);
  CHECK(loader.cache()->bytes() == 23u * 3 * 24 * 24 * sizeof(float));  // every image cached once
}

TEST_CASE("loader: a corrupt image surfaces from next() naming the file") {
  fs::path root = fs::temp_directory_path() / "mms_test_batching_corrupt";
  fs::remove_all(root);
  write_synthetic_dataset(root.string(), {.num_images = 6, .seed = 1, .image_size = 32});
  Dataset d = load_mmscale_all(root.string());
  { std::ofstream(d.images[2].path, std::ios::binary | std::ios::trunc) << "not a png"; }
  LoaderOptions options;
  options.sampler = {.batch_lists = 1, .list_size = 2, .shuffle = false};
  options.image = small_images();
  options.threads = 2;
  BatchLoader loader(d, *fixture().tokenizer, options);
  loader.start(0, 6);
  ListBatch batch;
  CHECK(loader.next(batch));
  CHECK(loader.next(batch));  // steps before the bad one still arrive
  CHECK_THROWS_WITH_AS(loader.next(batch), doctest::Contains(d.images[2].path.c_str()), mms::Error);
}

TEST_CASE("trim_text_to_longest: hand-made rows of different lengths and an all-padding row") {
  // B = 2 lists x K = 2 texts, L = 6. Real lengths 3, 5, 0 (all padding), 2.
  ListBatch batch;
  batch.batch_lists = 2;
  batch.list_size = 2;
  batch.context_length = 6;
  batch.input_ids = {10, 11, 99, 99, 99, 99,   //
                     10, 12, 13, 14, 99, 99,   //
                     99, 99, 99, 99, 99, 99,   //
                     10, 99, 99, 99, 99, 99};
  batch.attention_mask = {1, 1, 1, 0, 0, 0,  //
                          1, 1, 1, 1, 1, 0,  //
                          0, 0, 0, 0, 0, 0,  //
                          1, 1, 0, 0, 0, 0};
  CHECK(longest_real_text(batch) == 5);
  const TextTrim trim = trim_text_to_longest(batch);
  CHECK(trim.rows == 4);
  CHECK(trim.from_length == 6);
  CHECK(trim.to_length == 5);
  CHECK(trim.tokens_before() == 24);
  CHECK(trim.tokens_after() == 20);
  CHECK(trim.tokens_saved() == 4);
  CHECK(batch.context_length == 5);
  CHECK(batch.input_ids == std::vector<int32_t>{10, 11, 99, 99, 99,  //
                                               10, 12, 13, 14, 99,  //
                                               99, 99, 99, 99, 99,  //
                                               10, 99, 99, 99, 99});
  CHECK(batch.attention_mask == std::vector<int32_t>{1, 1, 1, 0, 0,  //
                                                    1, 1, 1, 1, 1,  //
                                                    0, 0, 0, 0, 0,  //
                                                    1, 1, 0, 0, 0});
  // Idempotent: trimming again keeps everything.
  const ListBatch once = batch;
  const TextTrim again = trim_text_to_longest(batch);
  CHECK(again.tokens_saved() == 0);
  CHECK(batch.input_ids == once.input_ids);
  CHECK(batch.attention_mask == once.attention_mask);

  // A batch whose every row is padding keeps one position (never 0); a full-length row
  // keeps all L.
  ListBatch empty;
  empty.batch_lists = 1;
  empty.list_size = 2;
  empty.context_length = 3;
  empty.input_ids = {7, 7, 7, 7, 7, 7};
  empty.attention_mask = {0, 0, 0, 0, 0, 0};
  CHECK(trim_text_to_longest(empty).to_length == 1);
  CHECK(empty.input_ids == std::vector<int32_t>{7, 7});
  CHECK(empty.attention_mask == std::vector<int32_t>{0, 0});
  ListBatch full = once;
  full.attention_mask[3] = 1;  // row 0's last position is real: L' = L
  full.attention_mask[4] = 1;
  CHECK(trim_text_to_longest(full).to_length == 5);
  CHECK(full.input_ids == once.input_ids);

  // Buffers that do not hold whole rows are rejected.
  ListBatch broken = once;
  broken.input_ids.pop_back();
  CHECK_THROWS_AS(trim_text_to_longest(broken), mms::Error);
}

TEST_CASE("trim_text_to_longest: a real batch keeps every real token and each row's prefix") {
  const Fixture& f = fixture();
  TokenizedDataset tokens = tokenize_dataset(f.dataset, *f.tokenizer, 24);
  ListSampler sampler(f.dataset, {.batch_lists = 6, .list_size = 5, .seed = 4});
  const ListBatch full = make_batch(f.dataset, tokens, sampler.batch(0, 0), 5, small_images(), nullptr);
  ListBatch trimmed = full;
  const TextTrim trim = trim_text_to_longest(trimmed);
  const int64_t L = 24, Lp = trim.to_length, rows = 30;
  REQUIRE(Lp < L);  // the synthetic texts are short
  int64_t longest = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t real = 0;
    for (int64_t i = 0; i < L; ++i) real += full.attention_mask[r * L + i];
    longest = std::max(longest, real);
    for (int64_t i = 0; i < L; ++i) {
      if (i < Lp) {
        CHECK(trimmed.input_ids[r * Lp + i] == full.input_ids[r * L + i]);
        CHECK(trimmed.attention_mask[r * Lp + i] == full.attention_mask[r * L + i]);
      } else {
        CHECK(full.attention_mask[r * L + i] == 0);  // only padding was cut
      }
    }
  }
  CHECK(Lp == longest);
  CHECK(trim.tokens_saved() == rows * (L - Lp));
  // Everything but the texts is untouched.
  CHECK(trimmed.pixels == full.pixels);
  CHECK(trimmed.ratings == full.ratings);
  CHECK(trimmed.valid == full.valid);
}
