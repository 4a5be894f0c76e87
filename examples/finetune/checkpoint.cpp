#include "checkpoint.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>

#include "tensor/error.h"
#include "tensor/safetensors.h"

namespace mmsft {

namespace {

const std::string& meta_at(const std::map<std::string, std::string>& meta, const std::string& key,
                           const std::string& path) {
  auto it = meta.find(key);
  MMS_CHECK(it != meta.end(), path, ": not a finetune checkpoint (no '", key, "' in __metadata__)");
  return it->second;
}

// Decimal digits only: std::stoull alone would take " 3" and wrap "-1" to 2^64 - 1.
uint64_t parse_u64(const std::string& text, const std::string& what, const std::string& path) {
  const bool digits = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  try {
    if (digits) return std::stoull(text);
  } catch (const std::out_of_range&) {
  }
  mms::fail(path, ": __metadata__.", what, " is not a whole number: '", text, "'");
}

// A step count: a whole number that an int64 holds.
int64_t parse_count(const std::string& text, const std::string& what, const std::string& path) {
  const uint64_t v = parse_u64(text, what, path);
  MMS_CHECK(v <= static_cast<uint64_t>(INT64_MAX), path, ": __metadata__.", what, " is out of range: '", text, "'");
  return static_cast<int64_t>(v);
}

nlohmann::json parse_json(const std::string& text, const std::string& what, const std::string& path) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    mms::fail(path, ": __metadata__.", what, " is not valid JSON: ", e.what());
  }
}

nlohmann::json optional_number(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json log_rows_to_json(const std::vector<LogRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const LogRow& r : rows)
    out.push_back({r.step, r.loss, r.loss_listmle, r.loss_mse, r.loss_modality, r.loss_bce, r.loss_pairwise, r.lr,
                   r.grad_norm, r.pairs_per_second, optional_number(r.val_ndcg5),
                   optional_number(r.val_pairwise_acc)});
  return out;
}

std::vector<LogRow> log_rows_from_json(const nlohmann::json& j) {
  std::vector<LogRow> rows;
  for (const auto& a : j) {
    MMS_CHECK(a.is_array() && a.size() == 12, "train_log: malformed row ", a.dump());
    LogRow r;
    r.step = a[0].get<int64_t>();
    double* fields[] = {&r.loss, &r.loss_listmle, &r.loss_mse, &r.loss_modality, &r.loss_bce, &r.loss_pairwise,
                        &r.lr, &r.grad_norm, &r.pairs_per_second};
    for (size_t i = 0; i < 9; ++i) *fields[i] = a[i + 1].get<double>();
    if (!a[10].is_null()) r.val_ndcg5 = a[10].get<double>();
    if (!a[11].is_null()) r.val_pairwise_acc = a[11].get<double>();
    rows.push_back(r);
  }
  return rows;
}

void save_checkpoint(const std::string& path, const mms::vlm::PairScorer& model, const mms::nn::AdamW& optimizer,
                     const TrainingState& state) {
  mms::nn::NamedTensors tensors = model.ordered_state_dict();
  int64_t optimizer_params = 0;
  for (auto& [name, t] : optimizer.state_dict()) {
    if (name.rfind("step.", 0) == 0) ++optimizer_params;
    tensors.emplace_back(kOptimizerPrefix + name, t);
  }
  std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"mmscale", "pair_scorer"},
      {"clip_config", mms::vlm::clip_config_to_json(model.config).dump()},
      {"head_hidden_size", std::to_string(model.head->config.hidden_size)},
      {"head_dropout", std::to_string(model.head->config.dropout)},
      {"finetune_step", std::to_string(state.step)},
      {"total_steps", std::to_string(state.total_steps)},
      {"rng_seed", std::to_string(state.rng_seed)},
      {"rng_offset", std::to_string(state.rng_offset)},
      {"options", state.options.dump()},
      {"trajectory", state.trajectory.dump()},
      {"inputs", state.inputs.dump()},
      {"optimizer_params", std::to_string(optimizer_params)},
      {"vocab", state.vocab},
      {"train_log", log_rows_to_json(state.log).dump()},
  };
  if (!state.text_trim.is_null()) metadata["text_trim"] = state.text_trim.dump();
  mms::save_safetensors(path, tensors, metadata);
}

CheckpointFile read_checkpoint(const std::string& path) {
  CheckpointFile file;
  file.path = path;
  file.contents = mms::load_safetensors_with_metadata(path);
  const auto& meta = file.contents.metadata;
  TrainingState& state = file.state;
  state.step = parse_count(meta_at(meta, "finetune_step", path), "finetune_step", path);
  state.rng_seed = parse_u64(meta_at(meta, "rng_seed", path), "rng_seed", path);
  state.rng_offset = parse_u64(meta_at(meta, "rng_offset", path), "rng_offset", path);
  state.options = parse_json(meta_at(meta, "options", path), "options", path);
  state.trajectory = parse_json(meta_at(meta, "trajectory", path), "trajectory", path);
  if (auto it = meta.find("vocab"); it != meta.end()) state.vocab = it->second;
  if (auto it = meta.find("total_steps"); it != meta.end())
    state.total_steps = parse_count(it->second, "total_steps", path);
  if (auto it = meta.find("inputs"); it != meta.end()) state.inputs = parse_json(it->second, "inputs", path);
  if (auto it = meta.find("text_trim"); it != meta.end()) state.text_trim = parse_json(it->second, "text_trim", path);
  if (auto it = meta.find("optimizer_params"); it != meta.end())
    file.optimizer_params = parse_count(it->second, "optimizer_params", path);
  try {
    state.log = log_rows_from_json(parse_json(meta_at(meta, "train_log", path), "train_log", path));
  } catch (const std::exception& e) {
    mms::fail(path, ": __metadata__.train_log: ", e.what());
  }
  return file;
}

void apply_checkpoint(const CheckpointFile& file, mms::vlm::PairScorer& model, mms::nn::AdamW& optimizer) {
  const std::string& path = file.path;
  mms::nn::StateDict model_state, optimizer_state;
  const std::string prefix = kOptimizerPrefix;
  int64_t with_state = 0;
  for (const auto& [name, t] : file.contents.tensors) {
    if (name.rfind(prefix, 0) != 0) {
      model_state[name] = t;
      continue;
    }
    const std::string key = name.substr(prefix.size());
    optimizer_state[key] = t;
    if (key.rfind("step.", 0) == 0) {
      ++with_state;
      // AdamW's bias correction depends on it: a count past the run's own is not this run's state.
      MMS_CHECK(t.numel() != 1 || t.item() <= static_cast<double>(file.state.step), path, ": ", name, " is ",
                t.item(), ", past the checkpoint's finetune_step ", file.state.step);
    }
  }
  MMS_CHECK(file.optimizer_params < 0 || with_state == file.optimizer_params, path, ": AdamW state for ", with_state,
            " parameters, but the checkpoint was written with ", file.optimizer_params,
            " (optimizer.* tensors are missing): resuming would restart their moments");
  try {
    model.load_state_dict(model_state, /*strict=*/true);
    optimizer.load_state_dict(optimizer_state);
  } catch (const mms::Error& e) {
    mms::fail(path, ": ", e.what());
  }
}

void refuse_to_overwrite_an_unfinished_run(const std::string& path) {
  if (!std::filesystem::exists(path)) return;
  TrainingState state;
  try {
    state = read_checkpoint(path).state;
  } catch (const mms::Error& e) {
    mms::fail(path, " exists but cannot be read as a finetune checkpoint, so it is not overwritten (", e.what(),
              "): move it away or choose another --out");
  }
  MMS_CHECK(state.total_steps == 0 || state.step >= state.total_steps, path, " holds an unfinished run (step ",
            state.step, " of ", state.total_steps, "): continue it with --resume, or move it away (or choose "
            "another --out) to start over");
}

std::shared_ptr<mms::vlm::PairScorer> load_scorer_from_checkpoint(const std::string& path) {
  mms::SafetensorsContents contents = mms::load_safetensors_with_metadata(path);
  const auto& meta = contents.metadata;
  const mms::vlm::CLIPConfig clip =
      mms::vlm::parse_clip_config(parse_json(meta_at(meta, "clip_config", path), "clip_config", path),
                                  path + " [clip_config]");
  mms::vlm::PairHeadConfig head;
  head.hidden_size = static_cast<int64_t>(parse_u64(meta_at(meta, "head_hidden_size", path), "head_hidden_size", path));
  try {
    head.dropout = std::stod(meta_at(meta, "head_dropout", path));
  } catch (const std::logic_error&) {
    mms::fail(path, ": __metadata__.head_dropout is not a number");
  }
  auto model = std::make_shared<mms::vlm::PairScorer>(clip, head);
  mms::nn::StateDict state;
  for (auto& [name, t] : contents.tensors)
    if (name.rfind(kOptimizerPrefix, 0) != 0) state[name] = t;
  try {
    model->load_state_dict(state, /*strict=*/true);
  } catch (const mms::Error& e) {
    mms::fail(path, ": ", e.what());
  }
  return model;
}

}  // namespace mmsft
