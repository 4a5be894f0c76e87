#include "vlm/scorer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "autograd/api.h"
#include "tensor/error.h"

namespace mms::vlm {

namespace fs = std::filesystem;

namespace {

// What examples/finetune puts beside the model in its checkpoint.
constexpr const char* kOptimizerPrefix = "optimizer.";

// A usable tokenizer location: a vocab.json+merges.txt folder, or a file.
bool is_vocab(const std::string& path) {
  if (path.empty()) return false;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return fs::exists(fs::path(path) / "vocab.json", ec);
  return fs::is_regular_file(path, ec);
}

nlohmann::json parse_or_null(const std::string& text) {
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

std::string string_field(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::string default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return (fs::path(xdg) / "mmscale").string();
  if (const char* home = std::getenv("HOME"); home && *home) return (fs::path(home) / ".cache" / "mmscale").string();
  return (fs::temp_directory_path() / "mmscale-cache").string();
}

std::array<double, 3> softmax3(const double* logits) {
  const double m = std::max({logits[0], logits[1], logits[2]});
  std::array<double, 3> p{};
  double sum = 0.0;
  for (int i = 0; i < 3; ++i) sum += p[i] = std::exp(logits[i] - m);
  for (double& x : p) x /= sum;
  return p;
}

}  // namespace

const char* modality_label(Modality m) { return data::modality_name(m); }

std::string find_checkpoint_vocab(const std::string& checkpoint, const std::map<std::string, std::string>& metadata,
                                  std::vector<std::string>* tried) {
  auto consider = [&](const std::string& path, const std::string& why) {
    if (path.empty()) return false;
    if (tried) tried->push_back(path + " (" + why + ")");
    return is_vocab(path);
  };
  if (auto it = metadata.find("vocab"); it != metadata.end() && consider(it->second, "__metadata__.vocab"))
    return it->second;

  nlohmann::json options;
  if (auto it = metadata.find("options"); it != metadata.end()) options = parse_or_null(it->second);
  if (const std::string v = string_field(options, "vocab"); consider(v, "the run's --vocab")) return v;
  if (const std::string m = string_field(options, "model"); !m.empty() && consider(m, "the run's --model")) return m;

  const fs::path dir = fs::path(checkpoint).parent_path();
  if (std::ifstream in(dir / "metrics.json"); in) {
    const std::string v = string_field(nlohmann::json::parse(in, nullptr, false), "vocab");
    if (consider(v, "metrics.json")) return v;
  }
  if (const std::string v = (dir / "vocab").string(); consider(v, "beside the checkpoint")) return v;

  // The synthetic default trains its vocabulary into its cache folder.
  if (options.is_object() && string_field(options, "data").empty() && options.contains("synthetic_images") &&
      options["synthetic_images"].is_number_integer()) {
    const std::string v = (fs::path(default_cache_dir()) /
                           ("synthetic-v1-seed0-n" + std::to_string(options["synthetic_images"].get<int64_t>())) /
                           "vocab")
                              .string();
    if (consider(v, "the synthetic default's cache")) return v;
  }
  return {};
}

Scorer Scorer::load(const std::string& checkpoint, const std::string& vocab, const ScorerOptions& options) {
  SafetensorsContents contents = load_safetensors_with_metadata(checkpoint);
  for (auto it = contents.tensors.begin(); it != contents.tensors.end();)
    it = it->first.rfind(kOptimizerPrefix, 0) == 0 ? contents.tensors.erase(it) : std::next(it);
  auto model = pair_scorer_from_contents(contents, checkpoint, options.dtype);

  std::string vocab_path = vocab;
  if (vocab_path.empty()) {
    std::vector<std::string> tried;
    vocab_path = find_checkpoint_vocab(checkpoint, contents.metadata, &tried);
    std::string list;
    for (const std::string& t : tried) list += "\n  " + t;
    MMS_CHECK(!vocab_path.empty(), checkpoint, ": no tokenizer vocabulary found for this checkpoint",
              tried.empty() ? std::string(" (its metadata names none)") : ", tried:" + list,
              "\npass one explicitly (a vocab.json+merges.txt folder, a vocab.json, or bpe_simple_vocab_16e6.txt.gz)");
  }
  data::ClipTokenizer tokenizer = data::ClipTokenizer::load(vocab_path);
  MMS_CHECK(tokenizer.vocab_size() <= model->config.text.vocab_size, "tokenizer ", vocab_path, " has ",
            tokenizer.vocab_size(), " tokens but ", checkpoint, "'s text vocab_size is ",
            model->config.text.vocab_size, ": not the vocabulary this model was trained with");

  // A run on a Hugging Face CLIP keeps that directory's image settings.
  std::string model_dir;
  if (auto it = contents.metadata.find("options"); it != contents.metadata.end())
    model_dir = string_field(parse_or_null(it->second), "model");
  const data::ClipImageConfig image = data::load_clip_image_config(model_dir, model->config.vision.image_size);

  Scorer scorer(std::move(model), std::move(tokenizer), image, options);
  scorer.vocab_source_ = vocab_path;
  return scorer;
}

Scorer::Scorer(std::shared_ptr<PairScorer> model, data::ClipTokenizer tokenizer, data::ClipImageConfig image_config,
               const ScorerOptions& options)
    : model_(std::move(model)),
      tokenizer_(std::make_shared<const data::ClipTokenizer>(std::move(tokenizer))),
      image_config_(image_config),
      options_(options) {
  MMS_CHECK(model_ != nullptr, "Scorer: no model");
  MMS_CHECK(options_.batch_size > 0, "Scorer: batch_size must be positive, got ", options_.batch_size);
  MMS_CHECK(image_config_.crop_size == model_->config.vision.image_size, "Scorer: images are cropped to ",
            image_config_.crop_size, " but the vision tower takes ", model_->config.vision.image_size);
  model_->eval();
  model_->to(Device::parse(options_.device));
}

double Scorer::score(const std::string& image_path, const std::string& text) const {
  return score_pair(image_path, text).score;
}

PairScore Scorer::score_pair(const std::string& image_path, const std::string& text) const {
  return score_batch({{image_path, text}}).front();
}

std::vector<PairScore> Scorer::score_batch(const std::vector<ScorerInput>& pairs) const {
  std::vector<PairScore> out;
  out.reserve(pairs.size());
  for (size_t start = 0; start < pairs.size(); start += static_cast<size_t>(options_.batch_size)) {
    const size_t end = std::min(pairs.size(), start + static_cast<size_t>(options_.batch_size));
    std::vector<std::vector<float>> images;
    std::unordered_map<std::string, int64_t> index_of;
    std::vector<int64_t> image_of_pair;
    std::vector<std::string> texts;
    for (size_t i = start; i < end; ++i) {
      auto [it, fresh] = index_of.emplace(pairs[i].image_path, static_cast<int64_t>(images.size()));
      if (fresh) images.push_back(data::clip_preprocess_file(pairs[i].image_path, image_config_));
      image_of_pair.push_back(it->second);
      texts.push_back(pairs[i].text);
    }
    for (PairScore& s : score_preprocessed(images, image_of_pair, texts)) out.push_back(s);
  }
  return out;
}

std::vector<PairScore> Scorer::score_preprocessed(const std::vector<std::vector<float>>& images,
                                                  const std::vector<int64_t>& image_of_pair,
                                                  const std::vector<std::string>& texts) const {
  MMS_CHECK(image_of_pair.size() == texts.size(), "Scorer: ", image_of_pair.size(), " image indices for ",
            texts.size(), " texts");
  if (texts.empty()) return {};
  const int64_t S = image_config_.crop_size, L = context_length();
  const int64_t N = static_cast<int64_t>(images.size()), M = static_cast<int64_t>(texts.size());
  std::vector<float> pixels;  // [N, 3, S, S]
  pixels.reserve(static_cast<size_t>(N * 3 * S * S));
  for (size_t n = 0; n < images.size(); ++n) {
    MMS_CHECK(static_cast<int64_t>(images[n].size()) == 3 * S * S, "Scorer: image ", n, " has ", images[n].size(),
              " values, expected 3 x ", S, " x ", S);
    pixels.insert(pixels.end(), images[n].begin(), images[n].end());
  }
  std::vector<int64_t> ids, mask;  // [M, L]
  ids.reserve(static_cast<size_t>(M * L));
  mask.reserve(static_cast<size_t>(M * L));
  for (int64_t i = 0; i < M; ++i) {
    MMS_CHECK(image_of_pair[i] >= 0 && image_of_pair[i] < N, "Scorer: pair ", i, " refers to image ",
              image_of_pair[i], " of ", N);
    const data::TokenizedText t = tokenizer_->encode(texts[i], L);
    ids.insert(ids.end(), t.input_ids.begin(), t.input_ids.end());
    mask.insert(mask.end(), t.attention_mask.begin(), t.attention_mask.end());
  }

  // PairScorer::forward's computation, with each pair's image picked by index instead
  // of a fixed K scenarios per image: towers once, then the head on paired rows.
  NoGradGuard no_grad;
  const Device device = model_->logit_scale.device();
  const DType dtype = model_->logit_scale.dtype();
  const Tensor image_embeds = model_->encode_image(from_vector(pixels, {N, 3, S, S}).to(dtype).to(device));
  const Tensor text_embeds =
      model_->encode_text(from_vector(ids, {M, L}).to(device), from_vector(mask, {M, L}).to(device));
  const Tensor paired = index_select(image_embeds, 0, from_vector(image_of_pair, {M}).to(device));
  const PairHead::Output head = model_->head->forward(paired, text_embeds);

  const std::vector<double> score = head.score.to_vector<double>();
  const std::vector<double> logits = head.modality_logits.to_vector<double>();  // [M, 3]
  std::vector<PairScore> out(static_cast<size_t>(M));
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].score = score[i];
    out[i].modality_probs = softmax3(&logits[i * 3]);
    const auto& p = out[i].modality_probs;
    const int best = p[1] > p[0] ? (p[2] > p[1] ? 2 : 1) : (p[2] > p[0] ? 2 : 0);  // first maximum, as argmax
    out[i].predicted_modality = static_cast<Modality>(best);
  }
  return out;
}

}  // namespace mms::vlm
