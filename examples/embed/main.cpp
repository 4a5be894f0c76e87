// embed: CLIP features and parameter gradients for a Hugging Face checkpoint, the
// parity contract of vlm/ against transformers.CLIPModel; and a quick look at what a
// model makes of some images and texts.
//
//   embed --model DIR --inputs IN.safetensors --out OUT.safetensors
//         [--dtype f32|f64] [--upstream UP.safetensors] [--device cpu|cuda[:N]]
//   embed --model DIR --image a.png [--image ...] --text "..." [--text ...] [--vocab V]
//
// DIR holds config.json + model.safetensors (or a sharded index). IN holds pixel_values
// [N,3,H,W] and/or input_ids [M,L] (+ attention_mask [M,L]). OUT gets the tower outputs,
// projections, normalised embeddings and logits_per_image; with --upstream, also
// grad.<HF name> for every parameter of sum(image_embeds*U_i) + sum(text_embeds*U_t).
// See vlm/clip_embed.h for the exact list.
//
// With --image / --text, files are decoded and preprocessed (data/clip_preprocess.h,
// DIR's preprocessor_config.json when present) and texts tokenised (--vocab, default:
// DIR's vocab.json + merges.txt); prints JSON on stdout: each input's feature norm
// (before normalisation), the image x text cosine similarities, logits_per_image and
// the softmax over texts per image (CLIP's zero-shot probabilities).
#include <CLI/CLI.hpp>
#include <cmath>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "autograd/api.h"
#include "data/clip_preprocess.h"
#include "data/tokenizer.h"
#include "tensor/error.h"
#include "tensor/safetensors.h"
#include "vlm/clip_embed.h"

namespace {

// [R, C] tensor -> rows of doubles.
nlohmann::ordered_json matrix_json(const mms::Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  const int64_t rows = t.size(0), cols = t.size(1);
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (int64_t r = 0; r < rows; ++r)
    out.push_back(std::vector<double>(v.begin() + r * cols, v.begin() + (r + 1) * cols));
  return out;
}

std::vector<double> row_norms(const mms::Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  const int64_t rows = t.size(0), cols = t.size(1);
  std::vector<double> out(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += v[r * cols + c] * v[r * cols + c];
    out[r] = std::sqrt(s);
  }
  return out;
}

// The friendly mode: files and strings in, a JSON summary out.
nlohmann::ordered_json describe(mms::vlm::CLIPModel& model, const std::string& model_dir,
                                const std::vector<std::string>& images, const std::vector<std::string>& texts,
                                std::string vocab) {
  const mms::vlm::CLIPConfig& config = model.config;
  mms::TensorMap inputs;
  nlohmann::ordered_json out;
  out["model"] = model_dir;
  if (!images.empty()) {
    const mms::data::ClipImageConfig ic = mms::data::load_clip_image_config(model_dir, config.vision.image_size);
    const int64_t S = ic.crop_size;
    std::vector<float> pixels;
    for (const std::string& path : images) {
      const std::vector<float> one = mms::data::clip_preprocess_file(path, ic);
      pixels.insert(pixels.end(), one.begin(), one.end());
    }
    inputs["pixel_values"] = mms::from_vector(pixels, {static_cast<int64_t>(images.size()), 3, S, S});
  }
  std::vector<int64_t> token_counts;
  if (!texts.empty()) {
    if (vocab.empty()) {
      MMS_CHECK(std::filesystem::exists(std::filesystem::path(model_dir) / "vocab.json"), model_dir,
                " has no vocab.json: pass the tokenizer with --vocab (a vocab.json+merges.txt folder or the OpenAI "
                "bpe_simple_vocab_16e6.txt.gz)");
      vocab = model_dir;
    }
    const mms::data::ClipTokenizer tokenizer = mms::data::ClipTokenizer::load(vocab);
    MMS_CHECK(tokenizer.vocab_size() <= config.text.vocab_size, "tokenizer ", vocab, " has ", tokenizer.vocab_size(),
              " tokens but ", model_dir, "'s text vocab_size is ", config.text.vocab_size);
    const int64_t L = config.text.max_position_embeddings, M = static_cast<int64_t>(texts.size());
    std::vector<int64_t> ids, mask;
    for (const std::string& text : texts) {
      const mms::data::TokenizedText t = tokenizer.encode(text, L);
      ids.insert(ids.end(), t.input_ids.begin(), t.input_ids.end());
      mask.insert(mask.end(), t.attention_mask.begin(), t.attention_mask.end());
      token_counts.push_back(static_cast<int64_t>(tokenizer.encode(text).size()));
    }
    inputs["input_ids"] = mms::from_vector(ids, {M, L});
    inputs["attention_mask"] = mms::from_vector(mask, {M, L});
    out["vocab"] = vocab;
  }

  const mms::TensorMap result = mms::vlm::clip_embed(model, inputs);
  if (!images.empty()) {
    const std::vector<double> norms = row_norms(result.at("image_features"));
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (size_t i = 0; i < images.size(); ++i) list.push_back({{"path", images[i]}, {"feature_norm", norms[i]}});
    out["images"] = list;
  }
  if (!texts.empty()) {
    const std::vector<double> norms = row_norms(result.at("text_features"));
    const int64_t L = config.text.max_position_embeddings;
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (size_t i = 0; i < texts.size(); ++i)
      list.push_back({{"text", texts[i]},
                      {"tokens", std::min(token_counts[i], L)},
                      {"truncated", token_counts[i] > L},
                      {"feature_norm", norms[i]}});
    out["texts"] = list;
  }
  if (!images.empty() && !texts.empty()) {
    const mms::Tensor cosine = mms::matmul(result.at("image_embeds"), mms::transpose(result.at("text_embeds"), 0, 1));
    out["cosine_similarity"] = matrix_json(cosine);  // [images, texts]
    out["logit_scale"] = std::exp(model.logit_scale.to_vector<double>().at(0));
    out["logits_per_image"] = matrix_json(result.at("logits_per_image"));
    out["probs_per_image"] = matrix_json(mms::softmax(result.at("logits_per_image"), 1));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CLIP embeddings (and gradients) of a Hugging Face checkpoint"};
  std::string model_dir, inputs_path, out_path, upstream_path, dtype_name = "f32", device_name = "cpu", vocab;
  std::vector<std::string> images, texts;
  app.add_option("--model", model_dir, "checkpoint directory (config.json + model.safetensors)")->required();
  auto* inputs_opt =
      app.add_option("--inputs", inputs_path, "safetensors with pixel_values and/or input_ids (+ attention_mask)");
  app.add_option("--out", out_path, "safetensors to write (with --inputs)");
  app.add_option("--dtype", dtype_name, "compute dtype")->check(CLI::IsMember({"f32", "f64"}));
  app.add_option("--upstream", upstream_path,
                 "safetensors with upstream_image_embeds and/or upstream_text_embeds: also write grad.<name>");
  app.add_option("--device", device_name, "cpu, cuda or cuda:N (float32 only on CUDA)");
  auto* image_opt = app.add_option("--image", images, "image file (repeatable): prints JSON instead")
                        ->check(CLI::ExistingFile);
  auto* text_opt = app.add_option("--text", texts, "text (repeatable): prints JSON instead");
  app.add_option("--vocab", vocab, "tokenizer for --text (default: the --model dir's vocab.json + merges.txt)");
  inputs_opt->excludes(image_opt)->excludes(text_opt);
  CLI11_PARSE(app, argc, argv);

  const bool friendly = !images.empty() || !texts.empty();
  if (!friendly && (inputs_path.empty() || out_path.empty())) {
    std::cerr << "embed: give --inputs IN --out OUT, or --image / --text (see --help)\n";
    return 2;
  }
  try {
    const mms::DType dtype = dtype_name == "f64" ? mms::DType::Float64 : mms::DType::Float32;
    const mms::Device device = mms::Device::parse(device_name);
    auto model = mms::vlm::load_clip_pretrained(model_dir, dtype);
    model->to(device);
    if (friendly) {
      std::cout << describe(*model, model_dir, images, texts, vocab).dump(2) << "\n";
      return 0;
    }
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
