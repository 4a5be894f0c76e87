#include "vlm/clip_model.h"

#include <cmath>

#include "autograd/api.h"
#include "nn/init.h"
#include "tensor/safetensors.h"

namespace mms::vlm {

namespace {

nn::TransformerConfig encoder_config(int64_t hidden, int64_t heads, int64_t intermediate,
                                     int64_t layers, const std::string& act, double eps) {
  nn::TransformerConfig c;
  c.hidden_size = hidden;
  c.num_heads = heads;
  c.intermediate_size = intermediate;
  c.num_layers = layers;
  c.activation = nn::parse_activation(act);
  c.layer_norm_eps = eps;
  return c;
}

}  // namespace

// ---- vision ---------------------------------------------------------------------

PatchEmbedding::PatchEmbedding(int64_t c, int64_t p, int64_t d)
    : Module("PatchEmbedding"), channels(c), patch_size(p), dim(d) {
  weight = register_parameter("weight", nn::init_normal({d, c, p, p}, nn::kDefaultInitStd));
}

Tensor PatchEmbedding::forward(const Tensor& pixels) const {
  MMS_CHECK(pixels.dim() == 4 && pixels.size(1) == channels && pixels.size(2) % patch_size == 0 &&
                pixels.size(3) % patch_size == 0,
            "PatchEmbedding: pixel_values must be [N, ", channels, ", H, W] with H and W multiples of ",
            patch_size, ", got ", shape_str(pixels.shape()));
  const int64_t n = pixels.size(0), gh = pixels.size(2) / patch_size, gw = pixels.size(3) / patch_size;
  const int64_t p = patch_size;
  // [N, C, gh, P, gw, P] -> [N, gh, gw, C, P, P] -> [N, gh*gw, C*P*P]: row-major patch
  // order is HF's conv output flatten(2) order; (c, y, x) inside matches the weight.
  Tensor patches = reshape(pixels, {n, channels, gh, p, gw, p});
  patches = permute(patches, {0, 2, 4, 1, 3, 5});
  patches = reshape(contiguous(patches), {n, gh * gw, channels * p * p});
  Tensor w = reshape(weight, {dim, channels * p * p});
  return linear(patches, w);  // [N, patches, D]
}

CLIPVisionEmbeddings::CLIPVisionEmbeddings(const CLIPVisionConfig& c)
    : Module("CLIPVisionEmbeddings"), config(c) {
  class_embedding = register_parameter("class_embedding", nn::init_normal({c.hidden_size}, 1.0));
  patch_embedding = register_module(
      "patch_embedding", std::make_shared<PatchEmbedding>(c.num_channels, c.patch_size, c.hidden_size));
  position_embedding = register_module(
      "position_embedding", std::make_shared<nn::Embedding>(c.num_positions(), c.hidden_size));
}

Tensor CLIPVisionEmbeddings::forward(const Tensor& pixels) const {
  MMS_CHECK(pixels.dim() == 4 && pixels.size(2) == config.image_size && pixels.size(3) == config.image_size,
            "CLIPVisionEmbeddings: input image size ", shape_str(pixels.shape()),
            " doesn't match the model's ", config.image_size, "x", config.image_size);
  const int64_t n = pixels.size(0), d = config.hidden_size;
  // HF casts the pixels to the weight dtype before the conv.
  Tensor x = pixels.dtype() == class_embedding.dtype() ? pixels : pixels.to(class_embedding.dtype());
  Tensor patches = patch_embedding->forward(x);                         // [N, g*g, D]
  Tensor cls = expand(reshape(class_embedding, {1, 1, d}), {n, 1, d});  // [N, 1, D]
  Tensor tokens = cat({cls, patches}, 1);                               // [N, 1+g*g, D]
  // position_ids are 0..num_positions-1, so the lookup is the whole table, broadcast.
  return add(tokens, position_embedding->weight);
}

CLIPVisionTransformer::CLIPVisionTransformer(const CLIPVisionConfig& c)
    : Module("CLIPVisionTransformer"), config(c) {
  embeddings = register_module("embeddings", std::make_shared<CLIPVisionEmbeddings>(c));
  pre_layrnorm = register_module("pre_layrnorm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  encoder = register_module(
      "encoder", std::make_shared<nn::Encoder>(encoder_config(c.hidden_size, c.num_attention_heads,
                                                              c.intermediate_size, c.num_hidden_layers,
                                                              c.hidden_act, c.layer_norm_eps)));
  post_layernorm = register_module("post_layernorm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
}

TowerOutput CLIPVisionTransformer::forward(const Tensor& pixels) const {
  Tensor h = pre_layrnorm->forward(embeddings->forward(pixels));
  Tensor last = encoder->forward(h);
  Tensor pooled = post_layernorm->forward(select(last, 1, 0));  // the class token
  return {last, pooled};
}

// ---- text -----------------------------------------------------------------------

CLIPTextEmbeddings::CLIPTextEmbeddings(const CLIPTextConfig& c) : Module("CLIPTextEmbeddings"), config(c) {
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size));
  position_embedding = register_module(
      "position_embedding", std::make_shared<nn::Embedding>(c.max_position_embeddings, c.hidden_size));
}

Tensor CLIPTextEmbeddings::forward(const Tensor& ids) const {
  MMS_CHECK(ids.dim() == 2 && ids.dtype() == DType::Int64, "CLIPTextEmbeddings: input_ids must be int64 [M, L], got ",
            dtype_name(ids.dtype()), " ", shape_str(ids.shape()));
  const int64_t length = ids.size(1);
  MMS_CHECK(length <= config.max_position_embeddings, "CLIPTextEmbeddings: sequence length ", length,
            " exceeds max_position_embeddings ", config.max_position_embeddings);
  // Out-of-range ids would read outside the table: reject them by name here. The check
  // reads the ids on the host: free for host ids (which are then uploaded without a
  // wait), one device -> host copy for device ids.
  if (ids.numel() > 0) {
    for (int64_t id : ids.to_vector<int64_t>())
      MMS_CHECK(id >= 0 && id < config.vocab_size, "CLIPTextEmbeddings: token id ", id,
                " is outside the vocabulary [0, ", config.vocab_size, ")");
  }
  Tensor tokens = token_embedding->forward(ids.to(token_embedding->weight.device()));  // [M, L, D]
  Tensor positions = narrow(position_embedding->weight, 0, 0, length);    // [L, D]
  return add(tokens, positions);
}

CLIPTextTransformer::CLIPTextTransformer(const CLIPTextConfig& c) : Module("CLIPTextTransformer"), config(c) {
  embeddings = register_module("embeddings", std::make_shared<CLIPTextEmbeddings>(c));
  encoder = register_module(
      "encoder", std::make_shared<nn::Encoder>(encoder_config(c.hidden_size, c.num_attention_heads,
                                                              c.intermediate_size, c.num_hidden_layers,
                                                              c.hidden_act, c.layer_norm_eps)));
  final_layer_norm = register_module("final_layer_norm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
}

Tensor text_pool_positions(const Tensor& input_ids, const CLIPTextConfig& config) {
  MMS_CHECK(input_ids.dim() == 2, "text_pool_positions: input_ids must be [M, L], got ",
            shape_str(input_ids.shape()));
  const int64_t rows = input_ids.size(0), length = input_ids.size(1);
  const std::vector<int64_t> ids = input_ids.to_vector<int64_t>();
  std::vector<int64_t> positions(rows, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t* row = ids.data() + r * length;
    if (config.pools_by_argmax()) {
      for (int64_t i = 1; i < length; ++i)
        if (row[i] > row[positions[r]]) positions[r] = i;  // strict: ties keep the first
    } else {
      for (int64_t i = 0; i < length; ++i)
        if (row[i] == config.eos_token_id) { positions[r] = i; break; }
    }
  }
  return from_vector(positions, {rows});
}

TowerOutput CLIPTextTransformer::forward(const Tensor& input_ids, const Tensor& attention_mask) const {
  // The ids and the mask are needed on the host (validation, the pooled position): one
  // copy here when they live on a device; none when the caller passes host tensors.
  const Tensor ids = input_ids.to(Device::cpu());
  Tensor h = embeddings->forward(ids);
  const int64_t rows = ids.size(0), length = ids.size(1), d = config.hidden_size;
  if (attention_mask.defined())
    MMS_CHECK(attention_mask.shape() == ids.shape(), "CLIPTextTransformer: attention_mask ",
              shape_str(attention_mask.shape()), " must match input_ids ", shape_str(ids.shape()));
  // Causal attention plus key padding. HF adds the two masks with the dtype's min; our
  // kernel masks hard. They agree whenever a row keeps a key, and key 0 (the bos token)
  // is always kept under the causal mask when attention_mask[:, 0] is 1: left padding
  // (query 0 with nothing to attend to) is rejected rather than silently diverging.
  if (attention_mask.defined() && rows > 0 && length > 0) {
    std::vector<double> keep = attention_mask.to_vector<double>();
    for (int64_t r = 0; r < rows; ++r)
      MMS_CHECK(keep[r * length] != 0.0, "CLIPTextTransformer: attention_mask row ", r,
                " masks its first token; CLIP text is right-padded (left padding is not supported)");
  }
  Tensor key_keep = attention_mask.defined() ? attention_mask.to(h.device()) : Tensor();
  Tensor last = final_layer_norm->forward(encoder->forward(h, key_keep, /*causal=*/true));
  // Pooled token: gather row r*L + position[r] of the flattened states.
  std::vector<int64_t> flat = text_pool_positions(ids, config).to_vector<int64_t>();
  for (int64_t r = 0; r < rows; ++r) flat[r] += r * length;
  Tensor index = from_vector(flat, {rows}).to(h.device());
  Tensor pooled = index_select(reshape(last, {rows * length, d}), 0, index);  // [M, D]
  return {last, pooled};
}

// ---- CLIPModel ------------------------------------------------------------------

CLIPModel::CLIPModel(const CLIPConfig& c, std::optional<uint64_t> seed) : Module("CLIPModel"), config(c) {
  text_model = register_module("text_model", std::make_shared<CLIPTextTransformer>(c.text));
  vision_model = register_module("vision_model", std::make_shared<CLIPVisionTransformer>(c.vision));
  visual_projection = register_module(
      "visual_projection", std::make_shared<nn::Linear>(c.vision.hidden_size, c.projection_dim, false));
  text_projection = register_module(
      "text_projection", std::make_shared<nn::Linear>(c.text.hidden_size, c.projection_dim, false));
  logit_scale = register_parameter("logit_scale", scalar_tensor(c.logit_scale_init_value));
  if (seed) init_clip_weights(*this, *seed);
}

Tensor CLIPModel::image_features(const Tensor& pixels) const {
  return visual_projection->forward(vision_model->forward(pixels).pooled);
}

Tensor CLIPModel::text_features(const Tensor& ids, const Tensor& mask) const {
  return text_projection->forward(text_model->forward(ids, mask).pooled);
}

Tensor CLIPModel::encode_image(const Tensor& pixels) const { return normalize(image_features(pixels), -1); }

Tensor CLIPModel::encode_text(const Tensor& ids, const Tensor& mask) const {
  return normalize(text_features(ids, mask), -1);
}

Tensor CLIPModel::logits(const Tensor& image_embeds, const Tensor& text_embeds) const {
  return mul(matmul(image_embeds, transpose(text_embeds, 0, 1)), exp(logit_scale));
}

CLIPOutput CLIPModel::forward(const Tensor& pixels, const Tensor& ids, const Tensor& mask) const {
  CLIPOutput out;
  if (pixels.defined()) {
    out.vision = vision_model->forward(pixels);
    out.image_features = visual_projection->forward(out.vision.pooled);
    // HF divides by the norm with no eps; normalize's eps (1e-12) only matters for a
    // zero vector, where HF would give NaN.
    out.image_embeds = normalize(out.image_features, -1);
  }
  if (ids.defined()) {
    out.text = text_model->forward(ids, mask);
    out.text_features = text_projection->forward(out.text.pooled);
    out.text_embeds = normalize(out.text_features, -1);
  }
  if (pixels.defined() && ids.defined()) out.logits_per_image = logits(out.image_embeds, out.text_embeds);
  return out;
}

// ---- weights --------------------------------------------------------------------

void init_clip_weights(CLIPModel& model, uint64_t seed) {
  Generator gen(seed);
  const CLIPConfig& c = model.config;
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  auto contains = [](const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; };
  for (auto& [name, p] : model.named_parameters()) {
    const bool vision = name.rfind("vision_model.", 0) == 0;
    const double width = static_cast<double>(vision ? c.vision.hidden_size : c.text.hidden_size);
    const double layers = static_cast<double>(vision ? c.vision.num_hidden_layers : c.text.num_hidden_layers);
    const double in_proj = 1.0 / std::sqrt(width) / std::sqrt(2.0 * layers);
    Tensor value;
    if (name == "logit_scale") {
      value = scalar_tensor(c.logit_scale_init_value);
    } else if (contains(name, "layer_norm") || contains(name, "layrnorm") || contains(name, "layernorm")) {
      value = ends_with(name, ".weight") ? ones(p.shape()) : zeros(p.shape());
    } else if (ends_with(name, ".bias")) {
      value = zeros(p.shape());
    } else {
      double std = 0.02;  // token / position embeddings, patch weight
      if (ends_with(name, "class_embedding")) std = 1.0 / std::sqrt(width);
      else if (contains(name, "q_proj") || contains(name, "k_proj") || contains(name, "v_proj") ||
               contains(name, "fc2"))
        std = in_proj;
      else if (contains(name, "out_proj")) std = 1.0 / std::sqrt(width);
      else if (contains(name, "fc1")) std = 1.0 / std::sqrt(2.0 * width);
      else if (name == "visual_projection.weight") std = 1.0 / std::sqrt(double(c.vision.hidden_size));
      else if (name == "text_projection.weight") std = 1.0 / std::sqrt(double(c.text.hidden_size));
      value = nn::init_normal(p.shape(), std, gen);
    }
    nn::assign_in_place(p, value.to(p.dtype()).to(p.device()));
  }
}

void drop_position_ids(std::map<std::string, Tensor>& weights) {
  const std::string tail = ".position_ids";
  for (auto it = weights.begin(); it != weights.end();) {
    const std::string& name = it->first;
    const bool buffer = name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    it = buffer ? weights.erase(it) : std::next(it);
  }
}

std::shared_ptr<CLIPModel> load_clip_pretrained(const std::string& dir, DType dtype) {
  CLIPConfig config = load_clip_config(dir);
  auto model = std::make_shared<CLIPModel>(config, std::nullopt);  // weights come from the file
  model->to(dtype);
  TensorMap weights = load_safetensors_dir(dir, dtype);
  drop_position_ids(weights);
  try {
    model->load_state_dict(nn::StateDict(weights.begin(), weights.end()), /*strict=*/true);
  } catch (const Error& e) {
    fail("load_clip_pretrained(", dir, "): ", e.what());
  }
  return model;
}

}  // namespace mms::vlm
