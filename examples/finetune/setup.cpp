#include "setup.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/batching.h"
#include "data/bpe_trainer.h"
#include "data/clip_preprocess.h"
#include "data/synthetic.h"
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
  d.train = mms::data::load_mmscale_split(d.root, "train");
  d.val = mms::data::load_mmscale_split(d.root, "val");
  d.test = mms::data::load_mmscale_split(d.root, "test");
  log("data: train " + d.train.report.summary());
  log("data: val " + d.val.report.summary());
  log("data: test " + d.test.report.summary());

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
    vocab = (fs::path(o.out) / "vocab").string();
    if (!fs::exists(fs::path(vocab) / "vocab.json")) {
      log("tokenizer: training a BPE vocabulary on the training texts -> " + vocab);
      mms::data::save_hf_bpe(train_vocab_on(d.train), vocab);
    }
  }
  d.tokenizer = std::make_shared<ClipTokenizer>(ClipTokenizer::load(vocab));
  d.vocab_source = vocab;
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
