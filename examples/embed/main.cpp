// embed: CLIP features and parameter gradients for a Hugging Face checkpoint, the
// parity contract of vlm/ against transformers.CLIPModel.
//
//   embed --model DIR --inputs IN.safetensors --out OUT.safetensors
//         [--dtype f32|f64] [--upstream UP.safetensors] [--device cpu|cuda[:N]]
//
// DIR holds config.json + model.safetensors (or a sharded index). IN holds pixel_values
// [N,3,H,W] and/or input_ids [M,L] (+ attention_mask [M,L]). OUT gets the tower outputs,
// projections, normalised embeddings and logits_per_image; with --upstream, also
// grad.<HF name> for every parameter of sum(image_embeds*U_i) + sum(text_embeds*U_t).
// See vlm/clip_embed.h for the exact list.
#include <CLI/CLI.hpp>
#include <iostream>

#include "tensor/safetensors.h"
#include "vlm/clip_embed.h"

int main(int argc, char** argv) {
  CLI::App app{"CLIP embeddings (and gradients) of a Hugging Face checkpoint"};
  std::string model_dir, inputs_path, out_path, upstream_path, dtype_name = "f32", device_name = "cpu";
  app.add_option("--model", model_dir, "checkpoint directory (config.json + model.safetensors)")->required();
  app.add_option("--inputs", inputs_path, "safetensors with pixel_values and/or input_ids (+ attention_mask)")
      ->required();
  app.add_option("--out", out_path, "safetensors to write")->required();
  app.add_option("--dtype", dtype_name, "compute dtype")->check(CLI::IsMember({"f32", "f64"}));
  app.add_option("--upstream", upstream_path,
                 "safetensors with upstream_image_embeds and/or upstream_text_embeds: also write grad.<name>");
  app.add_option("--device", device_name, "cpu, cuda or cuda:N (float32 only on CUDA)");
  CLI11_PARSE(app, argc, argv);

  try {
    const mms::DType dtype = dtype_name == "f64" ? mms::DType::Float64 : mms::DType::Float32;
    const mms::Device device = mms::Device::parse(device_name);
    auto model = mms::vlm::load_clip_pretrained(model_dir, dtype);
    model->to(device);
    mms::TensorMap inputs = mms::load_safetensors(inputs_path);
    mms::TensorMap upstream;
    if (!upstream_path.empty()) upstream = mms::load_safetensors(upstream_path);
    mms::TensorMap result = mms::vlm::clip_embed(*model, inputs, upstream_path.empty() ? nullptr : &upstream);
    mms::save_safetensors(out_path, result, {{"model", model_dir}, {"dtype", dtype_name}});
    std::cerr << "embed: wrote " << result.size() << " tensors to " << out_path << "\n";
  } catch (const std::exception& e) {
    std::cerr << "embed: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
