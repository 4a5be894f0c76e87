// vlm/scorer.h: the embedding path from a checkpoint to scores. A tiny scorer (saved
// with save_pair_scorer), a BPE vocabulary trained here and two PNGs written here; the
// Scorer must give PairScorer::forward's numbers, find a finetune checkpoint's
// vocabulary on its own, and reject bad inputs by name. Also the pairs-file reader of
// examples/score (compiled in, see tests/CMakeLists.txt).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/api.h"
#include "data/bpe_trainer.h"
#include "data/image.h"
#include "pairs.h"
#include "tensor/error.h"
#include "tensor/safetensors.h"
#include "vlm/scorer.h"

using namespace mms;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kTexts = {
    "someone hands a gift to a child", "someone takes the bread away from a child",
    "a person stands in the park",     "a kind stranger returns the lost wallet",
    "someone steals a wallet",         "a child reads a book in the kitchen"};

// One folder per test case: vocab/, two images, model files.
struct Fixture {
  fs::path dir;
  std::string vocab_dir, image_a, image_b;
  vlm::CLIPConfig config;

  explicit Fixture(const std::string& name) {
    dir = fs::temp_directory_path() / ("mms_test_scorer_" + std::to_string(::getpid())) / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    vocab_dir = (dir / "vocab").string();
    data::save_hf_bpe(data::train_bpe(kTexts, {.vocab_size = 600, .min_frequency = 1}), vocab_dir);
    image_a = write_image("a.png", 20, 16, 1);
    image_b = write_image("b.png", 16, 24, 2);

    const data::ClipTokenizer tok = data::ClipTokenizer::load(vocab_dir);
    config.text.vocab_size = tok.vocab_size();
    config.text.hidden_size = config.vision.hidden_size = 16;
    config.text.intermediate_size = config.vision.intermediate_size = 32;
    config.text.num_hidden_layers = config.vision.num_hidden_layers = 1;
    config.text.num_attention_heads = config.vision.num_attention_heads = 2;
    config.text.max_position_embeddings = 12;
    config.text.bos_token_id = tok.bos_id();
    config.text.eos_token_id = config.text.pad_token_id = tok.eos_id();
    config.vision.image_size = 16;
    config.vision.patch_size = 8;
    config.projection_dim = 8;
  }
  ~Fixture() { fs::remove_all(dir); }

  // A non-square gradient with a seed-dependent tint, so the crop and resize matter.
  std::string write_image(const std::string& name, int64_t w, int64_t h, int seed) const {
    data::ImageU8 img{w, h, 3, std::vector<uint8_t>(static_cast<size_t>(w * h * 3))};
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t c = 0; c < 3; ++c)
          img.pixels[(y * w + x) * 3 + c] = static_cast<uint8_t>((x * 11 * (c + 1) + y * 7 * seed + 40 * c) % 256);
    const std::string path = (dir / name).string();
    data::write_png(path, img);
    return path;
  }

  // A scorer whose head gives visibly different scores (the default head init is small).
  std::shared_ptr<vlm::PairScorer> model(uint64_t seed = 5) const {
    vlm::PairHeadConfig head;
    head.hidden_size = 12;
    auto m = std::make_shared<vlm::PairScorer>(config, head, seed);
    NoGradGuard no_grad;
    nn::assign_in_place(m->head->score->weight, randn({1, 12}, seed + 1));
    nn::assign_in_place(m->head->fusion->weight, randn({12, 24}, seed + 2));
    return m;
  }
};

}  // namespace

TEST_CASE("scorer: the same numbers as PairScorer::forward on the same input") {
  Fixture f("forward");
  const std::string path = (f.dir / "scorer.safetensors").string();
  vlm::save_pair_scorer(*f.model(), path);

  vlm::ScorerOptions options;
  options.dtype = DType::Float64;
  const vlm::Scorer scorer = vlm::Scorer::load(path, f.vocab_dir, options);
  CHECK(scorer.vocab_source() == f.vocab_dir);
  CHECK(scorer.context_length() == 12);

  // Reference: 2 images x K = 3 texts through PairScorer::forward, preprocessed and
  // tokenised by hand.
  auto reference = vlm::load_pair_scorer(path, DType::Float64);
  reference->eval();
  const data::ClipImageConfig ic = data::load_clip_image_config("", 16);
  std::vector<float> pixels = data::clip_preprocess_file(f.image_a, ic);
  const std::vector<float> second = data::clip_preprocess_file(f.image_b, ic);
  pixels.insert(pixels.end(), second.begin(), second.end());
  std::vector<int64_t> ids, mask;
  for (const std::string& t : kTexts) {
    const data::TokenizedText tt = scorer.tokenizer().encode(t, 12);
    ids.insert(ids.end(), tt.input_ids.begin(), tt.input_ids.end());
    mask.insert(mask.end(), tt.attention_mask.begin(), tt.attention_mask.end());
  }
  NoGradGuard no_grad;
  const auto ref = reference->forward(from_vector(pixels, {2, 3, 16, 16}).to(DType::Float64),
                                      from_vector(ids, {6, 12}), from_vector(mask, {6, 12}), 3);
  const std::vector<double> ref_score = ref.score.to_vector<double>();
  const std::vector<double> ref_logits = ref.modality_logits.to_vector<double>();

  std::vector<vlm::ScorerInput> pairs;
  for (size_t i = 0; i < kTexts.size(); ++i) pairs.push_back({i < 3 ? f.image_a : f.image_b, kTexts[i]});
  const std::vector<vlm::PairScore> got = scorer.score_batch(pairs);
  REQUIRE(got.size() == 6);
  double lo = 5, hi = 1;
  for (size_t i = 0; i < 6; ++i) {
    INFO("pair ", i);
    CHECK(std::abs(got[i].score - ref_score[i]) <= 1e-12);
    const double* l = &ref_logits[i * 3];
    const double z = std::exp(l[0]) + std::exp(l[1]) + std::exp(l[2]);
    for (int c = 0; c < 3; ++c) CHECK(std::abs(got[i].modality_probs[c] - std::exp(l[c]) / z) <= 1e-12);
    CHECK(static_cast<int>(got[i].predicted_modality) == std::max_element(l, l + 3) - l);
    lo = std::min(lo, got[i].score);
    hi = std::max(hi, got[i].score);
  }
  CHECK(lo > 1.0);
  CHECK(hi < 5.0);
  CHECK(hi - lo > 0.05);  // the texts and images matter: never validate on a constant

  // One pair at a time, and in batches that split an image's texts, give the same.
  CHECK(std::abs(scorer.score(f.image_b, kTexts[4]) - ref_score[4]) <= 1e-12);
  options.batch_size = 4;
  const std::vector<vlm::PairScore> chunked = vlm::Scorer::load(path, f.vocab_dir, options).score_batch(pairs);
  for (size_t i = 0; i < 6; ++i) CHECK(std::abs(chunked[i].score - ref_score[i]) <= 1e-12);

  // float32 (the default) agrees to float32 precision.
  const vlm::Scorer f32 = vlm::Scorer::load(path, f.vocab_dir);
  const std::vector<vlm::PairScore> got32 = f32.score_batch(pairs);
  for (size_t i = 0; i < 6; ++i) CHECK(std::abs(got32[i].score - ref_score[i]) <= 1e-4 * 5);
}

TEST_CASE("scorer: a finetune-style checkpoint (optimizer.* tensors) finds its own vocabulary") {
  Fixture f("finetune");
  auto model = f.model(9);
  nn::NamedTensors tensors = model->ordered_state_dict();
  tensors.emplace_back("optimizer.exp_avg.head.score.weight", zeros({1, 12}));
  tensors.emplace_back("optimizer.step.head.score.weight", scalar_tensor(3, DType::Int64));
  std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"mmscale", "pair_scorer"},
      {"clip_config", vlm::clip_config_to_json(model->config).dump()},
      {"head_hidden_size", "12"}, {"head_dropout", "0.1"},
      {"options", nlohmann::json{{"vocab", f.vocab_dir}, {"model", ""}, {"data", "x"}}.dump()}};
  const std::string path = (f.dir / "run" / "checkpoint.safetensors").string();
  fs::create_directories(f.dir / "run");
  save_safetensors(path, tensors, metadata);

  const vlm::Scorer scorer = vlm::Scorer::load(path);
  CHECK(scorer.vocab_source() == f.vocab_dir);
  model->eval();
  const vlm::Scorer direct(model, data::ClipTokenizer::load(f.vocab_dir), data::load_clip_image_config("", 16));
  CHECK(scorer.score(f.image_a, kTexts[0]) == doctest::Approx(direct.score(f.image_a, kTexts[0])).epsilon(1e-6));

  // Without the options entry, a vocab/ folder beside the checkpoint is found.
  metadata.erase("options");
  fs::copy(f.vocab_dir, f.dir / "run" / "vocab");
  save_safetensors(path, tensors, metadata);
  CHECK(vlm::Scorer::load(path).vocab_source() == (f.dir / "run" / "vocab").string());

  // And with nothing to go on, the error says what it tried and what to pass.
  fs::remove_all(f.dir / "run" / "vocab");
  try {
    vlm::Scorer::load(path);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("checkpoint.safetensors: no tokenizer vocabulary found") != std::string::npos);
    CHECK(what.find("beside the checkpoint") != std::string::npos);
    CHECK(what.find("pass one explicitly") != std::string::npos);
  }
}

TEST_CASE("scorer: bad inputs give errors that name the problem") {
  Fixture f("errors");
  const std::string path = (f.dir / "scorer.safetensors").string();
  vlm::save_pair_scorer(*f.model(), path);
  const vlm::Scorer scorer = vlm::Scorer::load(path, f.vocab_dir);

  CHECK_THROWS_WITH_AS(scorer.score((f.dir / "missing.png").string(), "x"),
                       doctest::Contains("missing.png"), Error);
  {
    std::ofstream bad(f.dir / "bad.png");
    bad << "not an image";
  }
  CHECK_THROWS_WITH_AS(scorer.score((f.dir / "bad.png").string(), "x"), doctest::Contains("bad.png"), Error);
  CHECK_THROWS_WITH_AS(scorer.score_preprocessed({std::vector<float>(10)}, {0}, {"x"}),
                       doctest::Contains("expected 3 x 16 x 16"), Error);
  CHECK_THROWS_WITH_AS(scorer.score_preprocessed({std::vector<float>(3 * 16 * 16)}, {1}, {"x"}),
                       doctest::Contains("refers to image 1 of 1"), Error);

  // Not a scorer file: a plain tensor file.
  const std::string plain = (f.dir / "plain.safetensors").string();
  save_safetensors(plain, TensorMap{{"w", zeros({2})}});
  CHECK_THROWS_WITH_AS(vlm::Scorer::load(plain, f.vocab_dir), doctest::Contains("not a pair scorer file"), Error);
  CHECK_THROWS_WITH_AS(vlm::Scorer::load((f.dir / "nope.safetensors").string(), f.vocab_dir),
                       doctest::Contains("nope.safetensors"), Error);

  // A vocabulary larger than the model's embedding table is not this model's.
  const std::string big = (f.dir / "big_vocab").string();
  std::vector<std::string> corpus = kTexts;
  for (int i = 0; i < 400; ++i)  // made-up words: plenty of distinct merges
    corpus.push_back(std::string{char('a' + i % 26), char('a' + (i / 26) % 26), char('a' + (i * 7) % 26)});
  data::save_hf_bpe(data::train_bpe(corpus, {.vocab_size = 700, .min_frequency = 1}), big);
  REQUIRE(data::ClipTokenizer::load(big).vocab_size() > f.config.text.vocab_size);
  CHECK_THROWS_WITH_AS(vlm::Scorer::load(path, big), doctest::Contains("not the vocabulary this model"), Error);
}

TEST_CASE("score tool: pairs files are read strictly, errors name file:line") {
  Fixture f("pairs");
  const fs::path file = f.dir / "pairs.jsonl";
  auto write = [&](const std::string& body) {
    std::ofstream out(file);
    out << body;
  };
  write("{\"image\": \"a.png\", \"text\": \"someone steals a wallet\", \"scenario_id\": 7, \"gold_rating\": 2.5,"
        " \"modality\": \"text\"}\n\n"
        "{\"image\": \"" + f.image_b + "\", \"text\": \"a person stands\", \"image_id\": \"B\", \"gold_rating\": null}\n");
  const std::vector<mmscore::PairRow> rows = mmscore::read_pairs_file(file.string());
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].image_path == (f.dir / "a.png").string());  // relative to the file's folder
  CHECK(rows[0].image_id == "a.png");
  CHECK(rows[0].scenario_id == "7");
  CHECK(rows[0].gold_rating.value() == 2.5);
  CHECK(rows[0].modality == "text");
  CHECK(rows[1].image_path == f.image_b);
  CHECK(rows[1].image_id == "B");
  CHECK(rows[1].scenario_id == "3");  // default: the line number
  CHECK_FALSE(rows[1].gold_rating.has_value());
  CHECK(rows[1].modality.empty());

  const std::string name = file.string();
  write("{\"image\": \"a.png\", \"text\": \"ok\"}\n{\"text\": \"no image\"}\n");
  CHECK_THROWS_WITH_AS(mmscore::read_pairs_file(name), doctest::Contains((name + ":2").c_str()), Error);
  write("{\"image\": \"a.png\", \"text\": \"\"}\n");
  CHECK_THROWS_WITH_AS(mmscore::read_pairs_file(name), doctest::Contains((name + ":1: field 'text'").c_str()), Error);
  write("{\"image\": \"missing.png\", \"text\": \"x\"}\n");
  CHECK_THROWS_WITH_AS(mmscore::read_pairs_file(name), doctest::Contains((name + ":1: field 'image'").c_str()), Error);
  write("{\"image\": \"a.png\", \"text\": \"x\", \"gold_rating\": 9}\n");
  CHECK_THROWS_WITH_AS(mmscore::read_pairs_file(name), doctest::Contains("gold_rating"), Error);
  write("{\"image\": \"a.png\", \"text\": \"x\", \"modality\": \"smell\"}\n");
  CHECK_THROWS_WITH_AS(mmscore::read_pairs_file(name), doctest::Contains((name + ":1: field 'modality'").c_str()), Error);
  write("{\"image\": \"a.png\", \"text\": \"x\"\n");
  CHECK_THROWS_WITH_AS(mmscore::read_pairs_file(name), doctest::Contains((name + ":1").c_str()), Error);
  write("\n\n");
  CHECK_THROWS_WITH_AS(mmscore::read_pairs_file(name), doctest::Contains("no pairs"), Error);
}

// A text of spaces, or a scenario_id given twice, used to be scored like any other row.
TEST_CASE("score tool: blank texts, repeated scenario_ids and control characters in paths are refused") {
  Fixture f("pairs_strict");
  const fs::path file = f.dir / "pairs.jsonl";
  const std::string name = file.string();
  auto write = [&](const std::string& body) { std::ofstream(file) << body; };
  auto error_of = [&] {
    try {
      mmscore::read_pairs_file(name);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string ok = "{\"image\": \"a.png\", \"text\": \"someone helps\"}\n";
  // ASCII spaces, U+00A0 + U+3000, a tab + U+2003.
  for (const std::string blank : {"   ", "\xC2\xA0\xE3\x80\x80", "\\t\xE2\x80\x83"}) {
    CAPTURE(blank);
    write(ok + "{\"image\": \"a.png\", \"text\": \"" + blank + "\"}\n");
    CHECK(error_of() == name + ":2: field 'text': empty text");
  }
  write("{\"image\": \"a.png\", \"text\": \"x\", \"scenario_id\": \"s1\"}\n"
        "{\"image\": \"b.png\", \"text\": \"y\", \"scenario_id\": \"s2\"}\n\n"
        "{\"image\": \"b.png\", \"text\": \"z\", \"scenario_id\": \"s1\"}\n");
  CHECK(error_of() == name + ":4: field 'scenario_id': duplicate scenario_id 's1' (first on line 1)");
  // An integer id and the default (the line number) share one namespace with strings.
  write(ok + "{\"image\": \"b.png\", \"text\": \"y\", \"scenario_id\": 1}\n");
  CHECK(error_of() == name + ":2: field 'scenario_id': duplicate scenario_id '1' (first on line 1)");
  // "a.png\u0000x" would open a.png: the OS reads a path only up to the NUL.
  write("{\"image\": \"a.png\\u0000x\", \"text\": \"x\"}\n");
  CHECK(error_of() == name + ":1: field 'image': control character at byte 5 in the path");
  // Spaces inside a text are fine.
  write("{\"image\": \"a.png\", \"text\": \"a\xC2\xA0" "child\", \"scenario_id\": \"s1\"}\n");
  REQUIRE(mmscore::read_pairs_file(name).size() == 1);
  CHECK(mmscore::read_pairs_file(name)[0].text == "a\xC2\xA0" "child");
}

// The scorer and embed take a Hugging Face directory's image settings through this.
TEST_CASE("load_clip_image_config: preprocessor_config.json, old and new forms, and its errors") {
  const fs::path dir = fs::temp_directory_path() / ("mms_test_scorer_" + std::to_string(::getpid())) / "preproc";
  fs::create_directories(dir);
  auto write = [&](const std::string& body) { std::ofstream(dir / "preprocessor_config.json") << body; };

  const data::ClipImageConfig none = data::load_clip_image_config("", 32);  // no directory: CLIP's defaults
  CHECK(none.size == 32);
  CHECK(none.crop_size == 32);
  CHECK(none.mean[0] == doctest::Approx(0.48145466));

  write(R"({"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32},
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 1.0]})");
  data::ClipImageConfig c = data::load_clip_image_config(dir.string(), 32);
  CHECK(c.size == 40);
  CHECK(c.crop_size == 32);
  CHECK(c.mean[1] == 0.5);
  CHECK(c.std[2] == 1.0);

  write(R"({"size": 36, "crop_size": 32})");  // the older integer form
  c = data::load_clip_image_config(dir.string(), 32);
  CHECK(c.size == 36);
  CHECK(c.crop_size == 32);

  write(R"({"crop_size": 224})");
  CHECK_THROWS_WITH_AS(data::load_clip_image_config(dir.string(), 32),
                       doctest::Contains("crop_size 224 differs from the vision config's image_size 32"), Error);
  write(R"({"size": "big"})");
  CHECK_THROWS_WITH_AS(data::load_clip_image_config(dir.string(), 32), doctest::Contains("preprocessor_config.json"),
                       Error);
  write("{not json");
  CHECK_THROWS_WITH_AS(data::load_clip_image_config(dir.string(), 32), doctest::Contains("preprocessor_config.json"),
                       Error);
  fs::remove_all(dir);
}
