#include "vlm/pair_scorer.h"

#include "autograd/api.h"
#include "nn/init.h"
#include "tensor/safetensors.h"

namespace mms::vlm {

namespace {

// The head's stream is distinct from the CLIP weights' stream of the same seed.
constexpr uint64_t kHeadStream = 0x9E3779B97F4A7C15ull;

void init_head(PairHead& head, uint64_t seed) {
  Generator gen(seed ^ kHeadStream);
  for (auto& [name, p] : head.named_parameters()) {
    const bool bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    Tensor value = bias ? zeros(p.shape()) : nn::init_normal(p.shape(), nn::kDefaultInitStd, gen);
    nn::assign_in_place(p, value.to(p.dtype()).to(p.device()));
  }
}

// Loads the CLIP names of `weights` into the scorer; every CLIP parameter must be there,
// nothing else may be (head.* is left alone). One error lists all problems.
void load_clip_part(PairScorer& model, TensorMap weights, const std::string& source) {
  drop_position_ids(weights);
  nn::LoadResult result;
  try {
    result = model.load_state_dict(nn::StateDict(weights.begin(), weights.end()), /*strict=*/false);
  } catch (const Error& e) {
    fail(source, ": ", e.what());
  }
  std::string problems;
  for (const std::string& name : result.missing)
    if (name.rfind("head.", 0) != 0) problems += " missing " + name + ";";
  for (const std::string& name : result.unexpected) problems += " unexpected " + name + ";";
  MMS_CHECK(problems.empty(), source, ": the CLIP weights do not match the config:", problems);
}

}  // namespace

PairHead::PairHead(int64_t projection_dim, const PairHeadConfig& c, uint64_t seed)
    : Module("PairHead"), config(c) {
  MMS_CHECK(c.hidden_size > 0, "PairHead: hidden_size must be positive, got ", c.hidden_size);
  fusion = register_module("fusion", std::make_shared<nn::Linear>(3 * projection_dim, c.hidden_size));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout));
  score = register_module("score", std::make_shared<nn::Linear>(c.hidden_size, 1));
  modality = register_module("modality", std::make_shared<nn::Linear>(c.hidden_size, kNumModalities));
  init_head(*this, seed);
}

PairHead::Output PairHead::forward(const Tensor& image_embeds, const Tensor& text_embeds) const {
  MMS_CHECK(image_embeds.shape() == text_embeds.shape() && image_embeds.dim() == 2,
            "PairHead: image_embeds ", shape_str(image_embeds.shape()), " and text_embeds ",
            shape_str(text_embeds.shape()), " must both be [B, P]");
  Tensor fused = cat({image_embeds, text_embeds, mul(image_embeds, text_embeds)}, 1);  // [B, 3P]
  Tensor z = dropout->forward(gelu(fusion->forward(fused)));                           // [B, H]
  Output out;
  out.score_logit = squeeze(score->forward(z), 1);                                     // [B]
  out.score = add(mul(sigmoid(out.score_logit), 4.0), 1.0);
  out.modality_logits = modality->forward(z);                                          // [B, 3]
  return out;
}

PairScorer::PairScorer(const CLIPConfig& clip_config, const PairHeadConfig& head_config, uint64_t seed,
                       bool random_clip)
    : CLIPModel(clip_config, random_clip ? std::optional<uint64_t>(seed) : std::nullopt) {
  head = register_module("head", std::make_shared<PairHead>(clip_config.projection_dim, head_config, seed));
}

PairScorer::Output PairScorer::forward(const Tensor& pixels, const Tensor& ids, const Tensor& mask,
                                       int64_t k) const {
  MMS_CHECK(k > 0 && pixels.defined() && ids.defined() && ids.dim() == 2 && pixels.dim() == 4 &&
                ids.size(0) == pixels.size(0) * k,
            "PairScorer: expected pixel_values [N, C, H, W] and input_ids [N*K, L] with K = ", k,
            ", got ", pixels.defined() ? shape_str(pixels.shape()) : "none", " and ",
            ids.defined() ? shape_str(ids.shape()) : "none");
  Output out;
  out.image_embeds = encode_image(pixels);                                  // [N, P]
  out.text_embeds = encode_text(ids, mask);                                 // [N*K, P]
  Tensor paired_images = repeat_interleave(out.image_embeds, k, 0);        // [N*K, P]
  PairHead::Output h = head->forward(paired_images, out.text_embeds);
  out.score = h.score;
  out.score_logit = h.score_logit;
  out.modality_logits = h.modality_logits;
  return out;
}

void save_pair_scorer(const PairScorer& model, const std::string& path) {
  std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"mmscale", "pair_scorer"},
      {"clip_config", clip_config_to_json(model.config).dump()},
      {"head_hidden_size", std::to_string(model.head->config.hidden_size)},
      {"head_dropout", std::to_string(model.head->config.dropout)},
  };
  save_safetensors(path, model.ordered_state_dict(), metadata);
}

std::shared_ptr<PairScorer> load_pair_scorer(const std::string& path, DType dtype) {
  return pair_scorer_from_contents(load_safetensors_with_metadata(path), path, dtype);
}

std::shared_ptr<PairScorer> pair_scorer_from_contents(const SafetensorsContents& contents, const std::string& path,
                                                      DType dtype) {
  auto meta = [&](const char* key) -> const std::string& {
    auto it = contents.metadata.find(key);
    MMS_CHECK(it != contents.metadata.end(), path, ": not a pair scorer file (no '", key,
              "' in __metadata__); a Hugging Face CLIP directory loads with pair_scorer_from_clip");
    return it->second;
  };
  CLIPConfig clip_config;
  try {
    clip_config = parse_clip_config(nlohmann::json::parse(meta("clip_config")), path + " [clip_config]");
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": __metadata__.clip_config is not valid JSON: ", e.what());
  }
  PairHeadConfig head_config;
  try {
    head_config.hidden_size = std::stoll(meta("head_hidden_size"));
    head_config.dropout = std::stod(meta("head_dropout"));
  } catch (const std::logic_error&) {  // stoll / stod: invalid_argument, out_of_range
    fail(path, ": __metadata__ head_hidden_size / head_dropout are not numbers");
  }
  auto model = std::make_shared<PairScorer>(clip_config, head_config, 0, /*random_clip=*/false);
  model->to(dtype);
  nn::StateDict state;
  for (auto& [name, t] : contents.tensors) state[name] = is_floating(t.dtype()) ? t.to(dtype) : t;
  try {
    model->load_state_dict(state, /*strict=*/true);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  return model;
}

std::shared_ptr<PairScorer> pair_scorer_from_clip(const std::string& clip_dir, const PairHeadConfig& head_config,
                                                  uint64_t seed, DType dtype) {
  auto model = std::make_shared<PairScorer>(load_clip_config(clip_dir), head_config, seed, /*random_clip=*/false);
  model->to(dtype);
  load_clip_part(*model, load_safetensors_dir(clip_dir, dtype), clip_dir);
  return model;
}

}  // namespace mms::vlm
