// --trim-text's claim: cutting a batch's texts from L to its longest real one (L') gives
// the CLIP text tower and the pair scorer the same outputs. A hand-made ListBatch of
// real tokenizer outputs (texts of different lengths plus a padding slot, L = 77) goes
// through the tiny CLIP (vlm::tiny_clip_config) untrimmed and trimmed, with both of
// CLIP's pooling rules (first eos; argmax id). Asserted: max |difference| <= 1e-6 in
// float32; the differences actually seen are printed (on the CPU, for this batch: the
// real tokens' states, the pooled outputs and the scores bit-identical; the parameter
// gradients equal up to rounding). Other shapes may round a score by an ulp: see
// data/batching.h.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "autograd/api.h"
#include "data/batching.h"
#include "data/bpe_trainer.h"
#include "vlm/pair_scorer.h"

using namespace mms;

namespace {

const std::vector<std::string>& texts() {
  static const std::vector<std::string> t{
      "Someone hands a gift to a child.",
      "A person pushes an old man into the river while others watch and laugh at him.",
      "A dog sleeps.",
      "Someone steals a wallet from a bag on the train.",
      "",
  };
  return t;
}

const data::ClipTokenizer& tokenizer() {
  static const data::ClipTokenizer t(data::train_bpe(texts(), {.vocab_size = 600, .min_frequency = 1}));
  return t;
}

// B = 2 lists x K = 3 scenarios at L = 77; slot 5 is padding (the empty text, as
// make_batch fills it), so the rows have four different real lengths.
data::ListBatch hand_made_batch() {
  const int64_t B = 2, K = 3, L = 77;
  data::ListBatch b;
  b.batch_lists = B;
  b.list_size = K;
  b.image_size = 224;
  b.context_length = L;
  b.pixels = randn({B, 3, 224, 224}, 5).to_vector<float>();
  const int text_of_slot[6] = {0, 1, 2, 3, 0, 4};
  for (int slot = 0; slot < B * K; ++slot) {
    const data::TokenizedText t = tokenizer().encode(texts()[text_of_slot[slot]], L);
    b.input_ids.insert(b.input_ids.end(), t.input_ids.begin(), t.input_ids.end());
    b.attention_mask.insert(b.attention_mask.end(), t.attention_mask.begin(), t.attention_mask.end());
  }
  return b;
}

Tensor ids_tensor(const data::ListBatch& b) {
  return from_vector(std::vector<int64_t>(b.input_ids.begin(), b.input_ids.end()),
                     {b.batch_lists * b.list_size, b.context_length});
}
Tensor mask_tensor(const data::ListBatch& b) {
  return from_vector(std::vector<int64_t>(b.attention_mask.begin(), b.attention_mask.end()),
                     {b.batch_lists * b.list_size, b.context_length});
}
Tensor pixels_tensor(const data::ListBatch& b) {
  return from_vector(b.pixels, {b.batch_lists, 3, b.image_size, b.image_size});
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0.0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * ca.element_size()) == 0;
}

}  // namespace

TEST_CASE("trim text: the tiny CLIP's pooled text output and the pair scores do not change") {
  const data::ListBatch full = hand_made_batch();
  data::ListBatch trimmed = full;
  const data::TextTrim trim = data::trim_text_to_longest(trimmed);
  const int64_t longest_text = static_cast<int64_t>(tokenizer().encode(texts()[1]).size());
  CHECK(trim.from_length == 77);
  CHECK(trim.to_length == longest_text);  // the long sentence: BOS + tokens + EOS
  MESSAGE("hand-made batch: L = 77 -> L' = ", trim.to_length, " (", trim.tokens_saved(), " of ",
          trim.tokens_before(), " tokens saved)");

  for (const bool argmax_pooling : {false, true}) {
    CAPTURE(argmax_pooling);
    vlm::CLIPConfig config = vlm::tiny_clip_config();
    config.text.vocab_size = tokenizer().vocab_size();
    config.text.bos_token_id = tokenizer().bos_id();
    config.text.eos_token_id = tokenizer().eos_id();
    if (argmax_pooling) {
      // The old configs' rule (eos_token_id == 2): argmax id, ties to the first. It pools
      // the eos only where eos is the largest id, as in OpenAI's vocabulary and ours.
      REQUIRE(tokenizer().eos_id() == tokenizer().vocab_size() - 1);
      config.text.eos_token_id = 2;
      REQUIRE(config.text.pools_by_argmax());
    }
    vlm::PairHeadConfig head;
    head.hidden_size = 32;
    vlm::PairScorer model(config, head, /*seed=*/3);
    model.eval();
    NoGradGuard no_grad;

    const std::vector<int64_t> pool_full = vlm::text_pool_positions(ids_tensor(full), config.text).to_vector<int64_t>();
    const std::vector<int64_t> pool_trim =
        vlm::text_pool_positions(ids_tensor(trimmed), config.text).to_vector<int64_t>();
    CHECK(pool_full == pool_trim);
    for (int64_t p : pool_trim) CHECK(p < trim.to_length);

    const vlm::TowerOutput text_full = model.text_model->forward(ids_tensor(full), mask_tensor(full));
    const vlm::TowerOutput text_trim = model.text_model->forward(ids_tensor(trimmed), mask_tensor(trimmed));
    CHECK(text_trim.last_hidden_state.size(1) == trim.to_length);
    const double pooled_diff = max_abs_diff(text_full.pooled, text_trim.pooled);
    // Every real token's hidden state too, not only the pooled one. (The states at the
    // padding positions a shorter row keeps are computed but never read; they are
    // reported, not asserted.)
    const Tensor kept_full = narrow(text_full.last_hidden_state, 1, 0, trim.to_length).contiguous();
    const std::vector<float> hf = kept_full.to_vector<float>(), ht = text_trim.last_hidden_state.to_vector<float>();
    REQUIRE(hf.size() == ht.size());
    const int64_t width = config.text.hidden_size;
    double hidden_diff = 0.0, padding_diff = 0.0;
    for (size_t i = 0; i < hf.size(); ++i) {
      const bool real = trimmed.attention_mask[i / static_cast<size_t>(width)] != 0;
      double& worst = real ? hidden_diff : padding_diff;
      worst = std::max(worst, std::abs(static_cast<double>(hf[i]) - ht[i]));
    }

    const auto out_full = model.forward(pixels_tensor(full), ids_tensor(full), mask_tensor(full), full.list_size);
    const auto out_trim =
        model.forward(pixels_tensor(trimmed), ids_tensor(trimmed), mask_tensor(trimmed), trimmed.list_size);
    const double score_diff = max_abs_diff(out_full.score, out_trim.score);
    const double embed_diff = max_abs_diff(out_full.text_embeds, out_trim.text_embeds);
    const double modality_diff = max_abs_diff(out_full.modality_logits, out_trim.modality_logits);
    MESSAGE(std::string(argmax_pooling ? "argmax" : "first-eos"), " pooling, float32: max |diff| pooled ",
            pooled_diff, ", real tokens' hidden states ", hidden_diff, " (kept padding positions ", padding_diff, ")", ", text_embeds ", embed_diff, ", scores ", score_diff,
            ", modality logits ", modality_diff, "; pooled bit-identical: ", same_bits(text_full.pooled, text_trim.pooled),
            ", scores bit-identical: ", same_bits(out_full.score, out_trim.score));
    CHECK(pooled_diff <= 1e-6);
    CHECK(hidden_diff <= 1e-6);
    CHECK(embed_diff <= 1e-6);
    CHECK(score_diff <= 1e-6);
    CHECK(modality_diff <= 1e-6);
    // Not a vacuous comparison: the rows' scores differ from each other.
    const std::vector<double> scores = out_full.score.to_vector<double>();
    CHECK(*std::max_element(scores.begin(), scores.end()) > *std::min_element(scores.begin(), scores.end()));
  }
}

TEST_CASE("trim text: the text tower's parameter gradients agree (training on trimmed batches)") {
  const data::ListBatch full = hand_made_batch();
  data::ListBatch trimmed = full;
  data::trim_text_to_longest(trimmed);
  vlm::CLIPConfig config = vlm::tiny_clip_config();
  config.text.vocab_size = tokenizer().vocab_size();
  config.text.eos_token_id = tokenizer().eos_id();
  vlm::PairHeadConfig head;
  head.hidden_size = 32;
  head.dropout = 0.0;

  auto gradients = [&](const data::ListBatch& b) {
    vlm::PairScorer model(config, head, /*seed=*/3);
    const auto out = model.forward(pixels_tensor(b), ids_tensor(b), mask_tensor(b), b.list_size);
    sum(square(out.score)).backward();
    std::map<std::string, Tensor> grads;
    for (auto& [name, p] : model.named_parameters())
      if (name.rfind("text_model.", 0) == 0 || name.rfind("text_projection", 0) == 0) grads[name] = p.grad();
    return grads;
  };
  const auto g_full = gradients(full), g_trim = gradients(trimmed);
  // The backward sums over B*K*L' token rows instead of B*K*L (the dropped rows add exact
  // zeros), so a GEMM may group the same terms differently: equal up to rounding, not
  // bit for bit. Measured against each tensor's largest |gradient|, except where that is
  // itself rounding noise: the k_proj biases, whose gradient is 0 in exact arithmetic (a
  // bias on the keys shifts all of a query's scores alike, which softmax ignores).
  double global = 0.0;
  for (const auto& [name, g] : g_full)
    for (double v : g.to_vector<double>()) global = std::max(global, std::abs(v));
  double worst = 0.0, worst_absolute = 0.0;
  std::string worst_name;
  int identical = 0;
  for (const auto& [name, g] : g_full) {
    CAPTURE(name);
    const Tensor& h = g_trim.at(name);
    REQUIRE(g.defined());
    REQUIRE(h.defined());
    double scale = 0.0;
    for (double v : g.to_vector<double>()) scale = std::max(scale, std::abs(v));
    const double diff = max_abs_diff(g, h);
    identical += same_bits(g, h);
    worst_absolute = std::max(worst_absolute, diff);
    CHECK(diff <= 1e-6 * global);
    if (scale < 1e-6 * global) {
      CHECK(name.find("k_proj.bias") != std::string::npos);  // the only exact-zero gradients
      continue;
    }
    CHECK(diff <= 1e-5 * scale);  // DESIGN.md's float32 tolerance is 1e-4
    if (diff / scale > worst) {
      worst = diff / scale;
      worst_name = name;
    }
  }
  MESSAGE("text-side parameter gradients, float32: ", identical, " of ", g_full.size(),
          " tensors bit-identical; largest difference ", worst_absolute, " (largest |gradient| ", global,
          "); worst relative to its tensor ", worst, (worst_name.empty() ? "" : " in " + worst_name),
          " (k_proj biases, 0 in exact arithmetic, left out)");
}
