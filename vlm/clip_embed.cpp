#include "vlm/clip_embed.h"

#include "autograd/api.h"

namespace mms::vlm {

namespace {

using TensorMap = std::map<std::string, Tensor>;

Tensor find(const TensorMap& map, const std::string& name) {
  auto it = map.find(name);
  return it == map.end() ? Tensor() : it->second;
}

Tensor as_int64(const Tensor& t, const char* name) {
  MMS_CHECK(!is_floating(t.dtype()), "embed: ", name, " must be an integer tensor, got ", dtype_name(t.dtype()));
  return t.dtype() == DType::Int64 ? t : t.to(DType::Int64);
}

// sum(embeds * upstream), with the upstream checked against the embeddings' shape.
Tensor contraction(const Tensor& embeds, const Tensor& upstream, const char* name) {
  MMS_CHECK(embeds.defined(), "embed: the upstream has ", name, " but the inputs lack that side");
  MMS_CHECK(upstream.shape() == embeds.shape(), "embed: ", name, " is ", shape_str(upstream.shape()),
            " but the embeddings are ", shape_str(embeds.shape()));
  return sum(mul(embeds, upstream.to(embeds.dtype()).to(embeds.device())));
}

}  // namespace

TensorMap clip_embed(CLIPModel& model, const TensorMap& inputs, const TensorMap* upstream) {
  // Compute where the model lives, in its dtype; the outputs stay on that device.
  const DType dtype = model.logit_scale.dtype();
  const Device device = model.logit_scale.device();
  Tensor pixels = find(inputs, "pixel_values");
  Tensor ids = find(inputs, "input_ids");
  Tensor mask = find(inputs, "attention_mask");
  MMS_CHECK(pixels.defined() || ids.defined(), "embed: the inputs hold neither pixel_values nor input_ids");
  MMS_CHECK(!mask.defined() || ids.defined(), "embed: attention_mask given without input_ids");
  if (pixels.defined()) {
    MMS_CHECK(is_floating(pixels.dtype()), "embed: pixel_values must be floating, got ", dtype_name(pixels.dtype()));
    pixels = pixels.to(dtype).to(device);
  }
  if (ids.defined()) ids = as_int64(ids, "input_ids").to(device);
  if (mask.defined()) mask = as_int64(mask, "attention_mask").to(device);

  const bool backward = upstream != nullptr;
  model.eval();
  model.zero_grad();
  std::unique_ptr<NoGradGuard> no_grad;
  if (!backward) no_grad = std::make_unique<NoGradGuard>();
  CLIPOutput out = model.forward(pixels, ids, mask);

  TensorMap result;
  if (pixels.defined()) {
    result["vision_last_hidden_state"] = out.vision.last_hidden_state;
    result["vision_pooled"] = out.vision.pooled;
    result["image_features"] = out.image_features;
    result["image_embeds"] = out.image_embeds;
  }
  if (ids.defined()) {
    result["text_last_hidden_state"] = out.text.last_hidden_state;
    result["text_pooled"] = out.text.pooled;
    result["text_features"] = out.text_features;
    result["text_embeds"] = out.text_embeds;
  }
  if (out.logits_per_image.defined()) result["logits_per_image"] = out.logits_per_image;

  if (backward) {
    Tensor up_image = find(*upstream, "upstream_image_embeds");
    Tensor up_text = find(*upstream, "upstream_text_embeds");
    MMS_CHECK(up_image.defined() || up_text.defined(),
              "embed: the upstream holds neither upstream_image_embeds nor upstream_text_embeds");
    for (const auto& [name, _] : *upstream)
      MMS_CHECK(name == "upstream_image_embeds" || name == "upstream_text_embeds",
                "embed: unexpected tensor '", name, "' in the upstream file");
    Tensor loss;
    if (up_image.defined()) loss = contraction(out.image_embeds, up_image, "upstream_image_embeds");
    if (up_text.defined()) {
      Tensor t = contraction(out.text_embeds, up_text, "upstream_text_embeds");
      loss = loss.defined() ? add(loss, t) : t;
    }
    loss.backward();
    for (const auto& [name, p] : model.named_parameters()) {
      Tensor g = p.grad();
      result["grad." + name] = g.defined() ? g : zeros_like(p);
    }
  }
  for (auto& [name, t] : result) t = t.detach();
  return result;
}

}  // namespace mms::vlm
