// score: rate (image, scenario) pairs with a trained scorer and write predictions in the
// format examples/finetune writes, so `evaluate --predictions` can score them.
//
//   score --checkpoint F (--data ROOT [--split test] | --pairs P.jsonl)
//         [--vocab PATH] [--out predictions.jsonl] [--device cpu|cuda] [--batch N]
//
// F: examples/finetune's checkpoint.safetensors or a save_pair_scorer file. The
// tokenizer is found from the checkpoint (vlm/scorer.h says where it looks); --vocab
// overrides. --data reads a split of the MM-SCALE release layout; --pairs a JSONL of
// {"image", "text", optional scenario_id/image_id/gold_rating/modality} (examples/score/
// pairs.h). Each output line: scenario_id, image_id, gold_rating (null if unknown),
// prediction, modality (null if unknown), predicted_modality.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "data/mmscale_dataset.h"
#include "pairs.h"
#include "tensor/error.h"
#include "vlm/scorer.h"

namespace {

// The rows to score, from either source, in the pairs-file shape.
std::vector<mmscore::PairRow> rows_from_split(const std::string& root_flag, const std::string& split) {
  const mms::data::Dataset dataset = mms::data::load_mmscale_split(mms::data::resolve_data_root(root_flag), split);
  std::vector<mmscore::PairRow> rows;
  for (const mms::data::ImageRecord& image : dataset.images)
    for (const mms::data::Scenario& s : image.scenarios)
      rows.push_back({image.path, s.text, s.scenario_id, image.image_id, s.mean_rating,
                      mms::data::modality_name(s.modality)});
  return rows;
}

// Through a temporary file and a rename: a crash never leaves half a predictions file.
void write_predictions(const std::string& path, const std::vector<mmscore::PairRow>& rows,
                       const std::vector<mms::vlm::PairScore>& scores) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    MMS_CHECK(out.good(), "cannot create ", temp);
    for (size_t i = 0; i < rows.size(); ++i) {
      nlohmann::ordered_json row;
      row["scenario_id"] = rows[i].scenario_id;
      row["image_id"] = rows[i].image_id;
      row["gold_rating"] = rows[i].gold_rating ? nlohmann::ordered_json(*rows[i].gold_rating) : nullptr;
      row["prediction"] = scores[i].score;
      row["modality"] = rows[i].modality.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(rows[i].modality);
      row["predicted_modality"] = mms::vlm::modality_label(scores[i].predicted_modality);
      out << row.dump() << "\n";
    }
    out.flush();
    MMS_CHECK(out.good(), "writing ", temp, " failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  MMS_CHECK(!ec, "cannot write ", path, ": ", ec.message());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Score (image, scenario) pairs with a trained MM-SCALE scorer; writes predictions JSONL"};
  std::string checkpoint, data_root, split = "test", pairs_path, vocab, out_path = "predictions.jsonl";
  std::string device = "cpu";
  int64_t batch = 64;
  app.add_option("--checkpoint", checkpoint, "checkpoint.safetensors from finetune (or a save_pair_scorer file)")
      ->required();
  auto* data_opt = app.add_option("--data", data_root, "MM-SCALE release root (else $MMSCALE_DATA_ROOT)");
  app.add_option("--split", split, "split of --data to score")->check(CLI::IsMember({"train", "val", "test"}));
  auto* pairs_opt = app.add_option("--pairs", pairs_path, "JSONL of {image, text, ...} rows to score");
  data_opt->excludes(pairs_opt);
  app.add_option("--vocab", vocab, "tokenizer (vocab.json+merges.txt dir or the OpenAI .gz); default: the checkpoint's");
  app.add_option("--out", out_path, "predictions file to write");
  app.add_option("--device", device, "cpu, cuda or cuda:N");
  app.add_option("--batch", batch, "pairs per forward pass")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    const std::vector<mmscore::PairRow> rows =
        pairs_path.empty() ? rows_from_split(data_root, split) : mmscore::read_pairs_file(pairs_path);
    mms::vlm::ScorerOptions options;
    options.device = device;
    options.batch_size = batch;
    const mms::vlm::Scorer scorer = mms::vlm::Scorer::load(checkpoint, vocab, options);
    std::cerr << "score: " << checkpoint << ", tokenizer " << scorer.vocab_source() << ", " << rows.size()
              << " pairs\n";

    const auto start = std::chrono::steady_clock::now();
    std::vector<mms::vlm::ScorerInput> inputs;
    inputs.reserve(rows.size());
    for (const mmscore::PairRow& r : rows) inputs.push_back({r.image_path, r.text});
    const std::vector<mms::vlm::PairScore> scores = scorer.score_batch(inputs);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    write_predictions(out_path, rows, scores);
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.1f s, %.1f pairs/s", seconds, rows.size() / std::max(seconds, 1e-9));
    std::cerr << "score: wrote " << rows.size() << " predictions to " << out_path << " (" << rate << ")\n";
    size_t unrated = 0;
    for (const mmscore::PairRow& r : rows) unrated += !r.gold_rating.has_value();
    if (unrated == 0)
      std::cerr << "score: metrics: evaluate --predictions " << out_path << "\n";
    else  // evaluate needs a gold rating on every row
      std::cerr << "score: " << unrated << " pairs have no gold_rating, so evaluate cannot score this file\n";
  } catch (const std::exception& e) {
    std::cerr << "score: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
