#include "setup.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "data/batching.h"
#include "data/bpe_trainer.h"
#include "data/clip_preprocess.h"
#include "data/synthetic.h"
#include "data/text_normalize.h"
#include "tensor/error.h"

namespace mmsft {

namespace fs = std::filesystem;
using mms::data::ClipTokenizer;

namespace {

constexpr const char* kCompleteMarker = "COMPLETE";
constexpr int64_t kVocabSize = 4096;  // the synthetic texts saturate well below this

// The BPE vocabulary a run trains when none is given: on the training split's texts,
// so validation and test texts never shape it.
mms::data::BpeVocab train_vocab_on(const mms::data::Dataset& train) {
  mms::data::BpeTrainOptions options;
  options.vocab_size = kVocabSize;
  return mms::data::train_bpe(mms::data::dataset_texts(train), options);
}

constexpr const char* kVocabTrainedOn = "TRAINED_ON";  // OUT/vocab's note of its training texts

// FNV-1a, 64 bits: a fingerprint to tell two inputs apart, not a cryptographic hash.
class Fingerprint {
 public:
  void add(std::string_view text) {
    for (unsigned char c : text) mix(c);
    mix(0xff);  // a separator, so ("ab", "c") and ("a", "bc") differ
  }
  void add(int64_t v) {
    for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
  }
  std::string hex() const {
    char buffer[17];
    std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(hash_));
    return buffer;
  }

 private:
  void mix(unsigned char c) { hash_ = (hash_ ^ c) * 0x100000001b3ull; }
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

// The checkpoint records resolved paths as JSON text: a non-UTF-8 $HOME,
// $MMSCALE_DATA_ROOT or working folder would otherwise fail only at the first save.
void check_utf8_path(const char* what, const std::string& path) {
  MMS_CHECK(mms::data::is_utf8(path), what, " '", path, "' is not valid UTF-8 (the checkpoint records it as JSON text)");
}

std::string read_first_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The splits a run needs, checked before any training: train and test must hold
// images (after the loader dropped lists too short to rank), and no image or scenario
// may sit in two splits (test data seen in training would inflate every metric).
void check_splits(const RunData& d, const Logger& log) {
  const std::string splits = (fs::path(d.root) / "splits").string();
  for (const auto& [name, split] : {std::pair<const char*, const mms::data::Dataset*>{"train", &d.train},
                                    {"test", &d.test}})
    MMS_CHECK(!split->images.empty(), splits, "/", name, ".jsonl: no image with at least 2 scenarios (",
              split->report.summary(), "): the run needs ", name, " lists");
  if (d.val.images.empty()) log("data: the val split is empty: no validation during training");
  std::unordered_map<std::string, const char*> image_split, scenario_split;
  for (const auto& [name, split] : {std::pair<const char*, const mms::data::Dataset*>{"train", &d.train},
                                    {"val", &d.val}, {"test", &d.test}}) {
    for (const mms::data::ImageRecord& image : split->images) {
      const auto [at, fresh] = image_split.emplace(image.image_id, name);
      MMS_CHECK(fresh, splits, "/", name, ".jsonl: image_id '", image.image_id, "' is also in ", splits, "/",
                at->second, ".jsonl: the splits must be image-disjoint");
      for (const mms::data::Scenario& scenario : image.scenarios) {
        const auto [where, first] = scenario_split.emplace(scenario.scenario_id, name);
        MMS_CHECK(first, splits, "/", name, ".jsonl: scenario_id '", scenario.scenario_id, "' is also in ", splits,
                  "/", where->second, ".jsonl");
      }
    }
  }
}

// What a resume must find unchanged about the training data: every image and scenario
// of the split, its text, rating and modality (not the pixels: the image ids stand in).
std::string dataset_fingerprint(const mms::data::Dataset& split) {
  Fingerprint f;
  for (const mms::data::ImageRecord& image : split.images) {
    f.add(image.image_id);
    for (const mms::data::Scenario& s : image.scenarios) {
      f.add(s.scenario_id);
      f.add(s.text);
      f.add(static_cast<int64_t>(std::llround(s.mean_rating * 1e6)));
      f.add(static_cast<int64_t>(s.modality));
    }
  }
  return f.hex();
}

// ...and about the tokenizer: its tokens in id order and its merges in rank order.
std::string tokenizer_fingerprint(const ClipTokenizer& tokenizer) {
  Fingerprint f;
  for (const std::string& token : tokenizer.vocab().id_to_token) f.add(token);
  f.add(static_cast<int64_t>(tokenizer.vocab().merges.size()));
  for (const auto& [left, right] : tokenizer.vocab().merges) {
    f.add(left);
    f.add(right);
  }
  return f.hex();
}

}  // namespace

std::string default_cache_dir(const Options& o) {
  if (!o.cache_dir.empty()) return o.cache_dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return (fs::path(xdg) / "mmscale").string();
  if (const char* home = std::getenv("HOME"); home && *home) return (fs::path(home) / ".cache" / "mmscale").string();
  return (fs::temp_directory_path() / "mmscale-cache").string();
}

std::string ensure_synthetic_dataset(const std::string& cache_dir, int64_t num_images, const Logger& log) {
  const fs::path root = fs::path(cache_dir) / ("synthetic-v1-seed0-n" + std::to_string(num_images));
  if (fs::exists(root / kCompleteMarker)) {
    log("data: synthetic stand-in (cached) " + root.string());
    return root.string();
  }
  // Build it beside its final place, then rename: a crash or a concurrent run never
  // leaves a half-written folder where the marker says "complete".
  fs::create_directories(cache_dir);
  const fs::path temp = root.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(temp);
  log("data: generating the synthetic stand-in (" + std::to_string(num_images) + " images) in " + root.string());
  mms::data::SyntheticOptions so;
  so.num_images = num_images;
  so.seed = 0;
  const mms::data::SyntheticSummary s = mms::data::write_synthetic_dataset(temp.string(), so);
  log("data: " + std::to_string(s.images) + " images, " + std::to_string(s.scenarios) + " scenarios (train/val/test " +
      std::to_string(s.train_images) + "/" + std::to_string(s.val_images) + "/" + std::to_string(s.test_images) +
      " images); training a BPE vocabulary on the training texts");
  const mms::data::Dataset train = mms::data::load_mmscale_split(temp.string(), "train");
  mms::data::save_hf_bpe(train_vocab_on(train), (temp / "vocab").string());
  {
    std::ofstream marker(temp / kCompleteMarker);
    marker << "synthetic-v1 seed 0, " << num_images << " images\n";
    MMS_CHECK(marker.good(), "cannot write ", (temp / kCompleteMarker).string());
  }
  std::error_code ec;
  fs::rename(temp, root, ec);
  if (ec) {  // another run finished first (or a stale incomplete folder is in the way)
    if (fs::exists(root / kCompleteMarker)) {
      fs::remove_all(temp);
    } else {
      fs::remove_all(root);
      fs::rename(temp, root);
    }
  }
  return root.string();
}

RunData load_run_data(const Options& o, const Logger& log) {
  RunData d;
  std::string root = o.data;
  if (root.empty())
    if (const char* env = std::getenv("MMSCALE_DATA_ROOT"); env && *env) root = env;
  if (root.empty()) {
    d.synthetic = true;
    d.root = ensure_synthetic_dataset(default_cache_dir(o), o.synthetic_images, log);
  } else {
    d.root = root;
    log("data: " + root);
  }
  check_utf8_path("the data root", d.root);
  mms::data::LoadOptions load;
  load.decode_images = o.check_images;
  if (o.check_images) log("data: --check-images: decoding every image of the three splits");
  d.train = mms::data::load_mmscale_split(d.root, "train", load);
  d.val = mms::data::load_mmscale_split(d.root, "val", load);
  d.test = mms::data::load_mmscale_split(d.root, "test", load);
  log("data: train " + d.train.report.summary());
  log("data: val " + d.val.report.summary());
  log("data: test " + d.test.report.summary());
  check_splits(d, log);
  d.train_fingerprint = dataset_fingerprint(d.train);

  // Tokenizer: --vocab, else the checkpoint's own files, else the synthetic cache's
  // vocabulary, else one trained on this training split (saved in OUT/vocab).
  std::string vocab = o.vocab;
  if (vocab.empty() && !o.model.empty()) {
    MMS_CHECK(fs::exists(fs::path(o.model) / "vocab.json"), "--model ", o.model,
              " has no vocab.json: pass the tokenizer with --vocab (a vocab.json+merges.txt dir or the OpenAI "
              "bpe_simple_vocab_16e6.txt.gz)");
    vocab = o.model;
  }
  if (vocab.empty() && d.synthetic) vocab = (fs::path(d.root) / "vocab").string();
  if (vocab.empty()) {
    // Trained on this training split and kept in OUT/vocab beside a note of which texts
    // it learnt from: reused for the same texts (a rerun), retrained when OUT last held
    // a run on other data. A --resume never retrains it: the checkpoint was trained with
    // that tokenizer, and a resume on other data is refused (Trainer::resume) without
    // having replaced it.
    vocab = (fs::path(o.out) / "vocab").string();
    const fs::path note = fs::path(vocab) / kVocabTrainedOn;
    const bool reusable = fs::exists(fs::path(vocab) / "vocab.json") &&
                          (o.resume || read_first_line(note) == d.train_fingerprint);
    if (!reusable) {
      log("tokenizer: training a BPE vocabulary on the training texts -> " + vocab +
          (fs::exists(fs::path(vocab) / "vocab.json") ? " (the one there was trained on other texts)" : ""));
      mms::data::save_hf_bpe(train_vocab_on(d.train), vocab);
      std::ofstream(note) << d.train_fingerprint << "\n";
    }
  }
  check_utf8_path("the tokenizer path", fs::absolute(vocab).string());
  check_utf8_path("the output folder", fs::absolute(o.out).string());
  d.tokenizer = std::make_shared<ClipTokenizer>(ClipTokenizer::load(vocab));
  d.vocab_source = vocab;
  d.tokenizer_fingerprint = tokenizer_fingerprint(*d.tokenizer);
  log("tokenizer: " + vocab + " (" + std::to_string(d.tokenizer->vocab_size()) + " tokens)");

  if (!o.model.empty()) {
    const mms::vlm::CLIPConfig config = mms::vlm::load_clip_config(o.model);
    d.image = mms::data::load_clip_image_config(o.model, config.vision.image_size);
    d.context_length = config.text.max_position_embeddings;
    MMS_CHECK(d.tokenizer->vocab_size() <= config.text.vocab_size, "tokenizer ", vocab, " has ",
              d.tokenizer->vocab_size(), " tokens but the model's text vocab_size is ", config.text.vocab_size);
  } else {
    d.image.size = d.image.crop_size = o.image_size;
    d.context_length = o.context_length;
  }
  return d;
}

mms::vlm::CLIPConfig small_clip_config(const Options& o, const ClipTokenizer& tokenizer) {
  mms::vlm::CLIPConfig c;
  c.text.vocab_size = tokenizer.vocab_size();
  c.text.hidden_size = o.width;
  c.text.intermediate_size = 4 * o.width;
  c.text.num_hidden_layers = o.layers;
  c.text.num_attention_heads = o.heads;
  c.text.max_position_embeddings = o.context_length;
  c.text.bos_token_id = tokenizer.bos_id();
  c.text.eos_token_id = tokenizer.eos_id();  // first-eos pooling (never 2 with a real vocabulary)
  c.text.pad_token_id = tokenizer.pad_id();
  c.vision.hidden_size = o.width;
  c.vision.intermediate_size = 4 * o.width;
  c.vision.num_hidden_layers = o.layers;
  c.vision.num_attention_heads = o.heads;
  c.vision.image_size = o.image_size;
  c.vision.patch_size = o.patch_size;
  c.projection_dim = o.width;
  return c;
}

std::shared_ptr<mms::vlm::PairScorer> build_model(const Options& o, const RunData& d) {
  mms::vlm::PairHeadConfig head;
  head.dropout = o.head_dropout;
  std::shared_ptr<mms::vlm::PairScorer> model;
  if (!o.model.empty()) {
    model = mms::vlm::pair_scorer_from_clip(o.model, head, o.seed);
  } else {
    head.hidden_size = 2 * o.width;
    model = std::make_shared<mms::vlm::PairScorer>(small_clip_config(o, *d.tokenizer), head, o.seed);
  }
  model->to(mms::Device::parse(o.device));
  return model;
}

}  // namespace mmsft
