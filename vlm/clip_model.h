// CLIP (Radford et al. 2021) as transformers.CLIPModel computes it, with its exact
// parameter names, so a Hugging Face checkpoint (config.json + model.safetensors)
// loads unchanged:
//
//   vision_model.embeddings.{class_embedding, patch_embedding.weight, position_embedding.weight}
//   vision_model.pre_layrnorm.*            (sic: HF's spelling)
//   vision_model.encoder.layers.N.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1/fc2}.*
//   vision_model.post_layernorm.*
//   text_model.embeddings.{token_embedding, position_embedding}.weight
//   text_model.encoder.layers.N.*           text_model.final_layer_norm.*
//   visual_projection.weight  text_projection.weight  (no bias)   logit_scale  (shape [])
//
// Shapes: pixel_values [N, C, H, W] (H = W = image_size), input_ids [M, L] int64,
// attention_mask [M, L] (1 = real token) optional. D = tower width, P = projection_dim.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "nn/transformer.h"
#include "vlm/clip_config.h"

namespace mms::vlm {

// Conv2d(C, D, kernel = stride = patch, no bias) written as patchify + matmul: the
// image is cut into non-overlapping P x P patches, each flattened in (c, y, x) order --
// the order of the conv weight [D, C, P, P] -- and multiplied by the weight viewed as
// [D, C*P*P]. Same numbers as the convolution, one GEMM.
class PatchEmbedding : public nn::Module {
 public:
  PatchEmbedding(int64_t channels, int64_t patch_size, int64_t dim);
  Tensor forward(const Tensor& pixel_values) const;  // [N, C, H, W] -> [N, (H/P)*(W/P), D]

  int64_t channels, patch_size, dim;
  Tensor weight;  // [D, C, P, P]
};

class CLIPVisionEmbeddings : public nn::Module {
 public:
  explicit CLIPVisionEmbeddings(const CLIPVisionConfig& config);
  Tensor forward(const Tensor& pixel_values) const;  // -> [N, 1 + patches, D]

  CLIPVisionConfig config;
  Tensor class_embedding;  // [D]
  std::shared_ptr<PatchEmbedding> patch_embedding;
  std::shared_ptr<nn::Embedding> position_embedding;  // [1 + patches, D]
};

class CLIPTextEmbeddings : public nn::Module {
 public:
  explicit CLIPTextEmbeddings(const CLIPTextConfig& config);
  Tensor forward(const Tensor& input_ids) const;  // [M, L] -> [M, L, D], positions 0..L-1

  CLIPTextConfig config;
  std::shared_ptr<nn::Embedding> token_embedding;     // [vocab, D]
  std::shared_ptr<nn::Embedding> position_embedding;  // [max_positions, D]
};

struct TowerOutput {
  Tensor last_hidden_state;  // vision: encoder output [N, 1+patches, D];
                             // text: after final_layer_norm [M, L, D]
  Tensor pooled;             // vision: post_layernorm(class token); text: the eos token [., D]
};

// HF's CLIPVisionTransformer ("vision_model").
class CLIPVisionTransformer : public nn::Module {
 public:
  explicit CLIPVisionTransformer(const CLIPVisionConfig& config);
  TowerOutput forward(const Tensor& pixel_values) const;

  CLIPVisionConfig config;
  std::shared_ptr<CLIPVisionEmbeddings> embeddings;
  std::shared_ptr<nn::LayerNorm> pre_layrnorm;
  std::shared_ptr<nn::Encoder> encoder;
  std::shared_ptr<nn::LayerNorm> post_layernorm;
};

// HF's CLIPTextTransformer ("text_model"): causal self-attention, padded keys masked.
// input_ids and attention_mask may be host tensors even when the model is on a GPU
// (unlike the rest of the engine, which wants operands on one device): the tower reads
// them on the host anyway (id range, left-padding check, the pooled position) and
// uploads them itself without a wait, so a training step with host ids never stalls.
// Device ids work too, at the cost of one device -> host copy.
class CLIPTextTransformer : public nn::Module {
 public:
  explicit CLIPTextTransformer(const CLIPTextConfig& config);
  TowerOutput forward(const Tensor& input_ids, const Tensor& attention_mask = Tensor()) const;

  CLIPTextConfig config;
  std::shared_ptr<CLIPTextEmbeddings> embeddings;
  std::shared_ptr<nn::Encoder> encoder;
  std::shared_ptr<nn::LayerNorm> final_layer_norm;
};

// Row index of the pooled token of each sequence (see CLIPTextConfig::pools_by_argmax):
// argmax(input_ids) with ties to the first, or the first position equal to eos_token_id
// (0 when a row has none, as torch's argmax of an all-zero row). Host int64 [M]; reads
// input_ids on the host (a copy when they live on a device).
Tensor text_pool_positions(const Tensor& input_ids, const CLIPTextConfig& config);

struct CLIPOutput {
  TowerOutput vision, text;
  Tensor image_features, text_features;  // projected [N, P], [M, P]
  Tensor image_embeds, text_embeds;      // L2-normalised
  Tensor logits_per_image;               // exp(logit_scale) * image_embeds . text_embeds^T [N, M]
};

class CLIPModel : public nn::Module {
 public:
  // Parameters drawn by init_clip_weights(*this, *seed), float32 on the host. With no
  // seed the layers keep their constructors' default init: for weights about to be
  // loaded, which skips a second pass of random draws (~13 s for ViT-B/32 on 2 cores).
  explicit CLIPModel(const CLIPConfig& config, std::optional<uint64_t> seed = 0);

  // Either input may be undefined (that side is skipped; logits need both).
  CLIPOutput forward(const Tensor& pixel_values, const Tensor& input_ids,
                     const Tensor& attention_mask = Tensor()) const;
  Tensor image_features(const Tensor& pixel_values) const;  // projected, not normalised
  Tensor text_features(const Tensor& input_ids, const Tensor& attention_mask = Tensor()) const;
  Tensor encode_image(const Tensor& pixel_values) const;    // normalised [N, P]
  Tensor encode_text(const Tensor& input_ids, const Tensor& attention_mask = Tensor()) const;
  Tensor logits(const Tensor& image_embeds, const Tensor& text_embeds) const;

  CLIPConfig config;
  std::shared_ptr<CLIPTextTransformer> text_model;
  std::shared_ptr<CLIPVisionTransformer> vision_model;
  std::shared_ptr<nn::Linear> visual_projection;  // [P, Dv], no bias
  std::shared_ptr<nn::Linear> text_projection;    // [P, Dt], no bias
  Tensor logit_scale;                             // shape [], log of the temperature
};

// Random CLIP weights from a seeded counter-based stream, following the stds of HF's
// CLIPPreTrainedModel._init_weights (initializer_factor 1): token and position
// embeddings 0.02, class token D^-1/2, patch weight 0.02, q/k/v projections and fc2
// D^-1/2 (2 layers)^-1/2, out_proj D^-1/2, fc1 (2D)^-1/2, projections D^-1/2,
// LayerNorm 1/0, biases 0, logit_scale = logit_scale_init_value. Keeps dtype and device.
void init_clip_weights(CLIPModel& model, uint64_t seed);

// Loads DIR/config.json and DIR's safetensors weights (single file or sharded) in
// `dtype`. Strict: missing, unexpected and mis-shaped names are listed in one error.
// HF's non-persistent position_ids buffers, when a file carries them, are ignored.
std::shared_ptr<CLIPModel> load_clip_pretrained(const std::string& dir, DType dtype = DType::Float32);
// Removes *.position_ids entries (older HF exports saved those index buffers).
void drop_position_ids(std::map<std::string, Tensor>& weights);

}  // namespace mms::vlm
