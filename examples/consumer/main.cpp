// consumer: a program outside the mmscale tree, built against the installed package.
//
//   consumer CHECKPOINT IMAGE TEXT [VOCAB]   score one pair with a trained scorer
//   consumer                                 self-contained: a tiny random scorer, a
//                                            vocabulary trained on four sentences and a
//                                            generated image, saved and loaded back
//
// The second form is what CI runs: it touches every layer of the library (tensors,
// autograd, nn, vlm, data, safetensors, PNG, tokenizer), so a missing header or link
// dependency in the installed package fails here.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "autograd/api.h"
#include "data/bpe_trainer.h"
#include "data/image.h"
#include "vlm/scorer.h"

namespace fs = std::filesystem;

namespace {

// The path a user of the library takes: checkpoint in, scores out.
int score_one(const std::string& checkpoint, const std::string& image, const std::string& text,
              const std::string& vocab) {
  const mms::vlm::Scorer scorer = mms::vlm::Scorer::load(checkpoint, vocab);
  const mms::vlm::PairScore s = scorer.score_pair(image, text);
  std::printf("score %.4f  modality text %.3f image %.3f both %.3f -> %s\n", s.score, s.modality_probs[0],
              s.modality_probs[1], s.modality_probs[2], mms::vlm::modality_label(s.predicted_modality));
  return 0;
}

// Builds the files score_one needs, in `dir`.
void make_demo_files(const fs::path& dir) {
  const std::vector<std::string> corpus = {"someone hands a gift to a child", "someone steals a wallet",
                                           "a person stands in the park", "a child reads a book"};
  mms::data::save_hf_bpe(mms::data::train_bpe(corpus, {.vocab_size = 600, .min_frequency = 1}),
                         (dir / "vocab").string());
  const mms::data::ClipTokenizer tok = mms::data::ClipTokenizer::load((dir / "vocab").string());

  mms::vlm::CLIPConfig config;  // a tiny CLIP: 16 wide, one layer per tower
  config.text.vocab_size = tok.vocab_size();
  config.text.hidden_size = config.vision.hidden_size = 16;
  config.text.intermediate_size = config.vision.intermediate_size = 32;
  config.text.num_hidden_layers = config.vision.num_hidden_layers = 1;
  config.text.num_attention_heads = config.vision.num_attention_heads = 2;
  config.text.max_position_embeddings = 16;
  config.text.bos_token_id = tok.bos_id();
  config.text.eos_token_id = config.text.pad_token_id = tok.eos_id();
  config.vision.image_size = 16;
  config.vision.patch_size = 8;
  config.projection_dim = 8;
  mms::vlm::save_pair_scorer(mms::vlm::PairScorer(config, {.hidden_size = 8, .dropout = 0.0}, /*seed=*/1),
                             (dir / "scorer.safetensors").string());

  mms::data::ImageU8 image{24, 16, 3, std::vector<uint8_t>(24 * 16 * 3)};
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 37 % 256);
  mms::data::write_png((dir / "image.png").string(), image);
}

// Reverse mode on one line: d/dx sum(x * x) = 2x.
bool autograd_check() {
  mms::Tensor x = mms::from_vector<float>({1.0f, -2.0f, 3.5f}, {3});
  x.set_requires_grad(true);
  mms::sum(mms::mul(x, x)).backward();
  const std::vector<float> g = x.grad().to_vector<float>();
  std::printf("d/dx sum(x*x) at (1, -2, 3.5) = (%g, %g, %g)\n", g[0], g[1], g[2]);
  return g[0] == 2.0f && g[1] == -4.0f && g[2] == 7.0f;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 4) return score_one(argv[1], argv[2], argv[3], argc >= 5 ? argv[4] : "");
    if (!autograd_check()) return 1;
    const fs::path dir = fs::temp_directory_path() / ("mmscale-consumer-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    make_demo_files(dir);
    const mms::vlm::Scorer scorer = mms::vlm::Scorer::load((dir / "scorer.safetensors").string(),
                                                           (dir / "vocab").string());
    const double s = scorer.score((dir / "image.png").string(), "someone hands a gift to a child");
    std::printf("random tiny scorer: score(image.png, \"someone hands a gift to a child\") = %.4f\n", s);
    score_one((dir / "scorer.safetensors").string(), (dir / "image.png").string(), "someone steals a wallet",
              (dir / "vocab").string());
    fs::remove_all(dir);
    if (!(s > 1.0 && s < 5.0)) {
      std::cerr << "consumer: score " << s << " is outside (1, 5)\n";
      return 1;
    }
    std::cout << "consumer: ok\n";
  } catch (const std::exception& e) {
    std::cerr << "consumer: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
