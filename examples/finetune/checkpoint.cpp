#include "checkpoint.h"

#include <cmath>

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

uint64_t parse_u64(const std::string& text, const std::string& what, const std::string& path) {
  try {
    size_t used = 0;
    const unsigned long long v = std::stoull(text, &used);
    if (used == text.size()) return v;
  } catch (const std::logic_error&) {
  }
  mms::fail(path, ": __metadata__.", what, " is not a number: '", text, "'");
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
  for (auto& [name, t] : optimizer.state_dict()) tensors.emplace_back(kOptimizerPrefix + name, t);
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"mmscale", "pair_scorer"},
      {"clip_config", mms::vlm::clip_config_to_json(model.config).dump()},
      {"head_hidden_size", std::to_string(model.head->config.hidden_size)},
      {"head_dropout", std::to_string(model.head->config.dropout)},
      {"finetune_step", std::to_string(state.step)},
      {"rng_seed", std::to_string(state.rng_seed)},
      {"rng_offset", std::to_string(state.rng_offset)},
      {"options", state.options.dump()},
      {"trajectory", state.trajectory.dump()},
      {"vocab", state.vocab},
      {"train_log", log_rows_to_json(state.log).dump()},
  };
  mms::save_safetensors(path, tensors, metadata);
}

TrainingState load_checkpoint(const std::string& path, mms::vlm::PairScorer& model, mms::nn::AdamW& optimizer) {
  mms::SafetensorsContents contents = mms::load_safetensors_with_metadata(path);
  const auto& meta = contents.metadata;
  TrainingState state;
  state.step = static_cast<int64_t>(parse_u64(meta_at(meta, "finetune_step", path), "finetune_step", path));
  state.rng_seed = parse_u64(meta_at(meta, "rng_seed", path), "rng_seed", path);
  state.rng_offset = parse_u64(meta_at(meta, "rng_offset", path), "rng_offset", path);
  state.options = parse_json(meta_at(meta, "options", path), "options", path);
  state.trajectory = parse_json(meta_at(meta, "trajectory", path), "trajectory", path);
  if (auto it = meta.find("vocab"); it != meta.end()) state.vocab = it->second;
  try {
    state.log = log_rows_from_json(parse_json(meta_at(meta, "train_log", path), "train_log", path));
  } catch (const std::exception& e) {
    mms::fail(path, ": __metadata__.train_log: ", e.what());
  }

  mms::nn::StateDict model_state, optimizer_state;
  const std::string prefix = kOptimizerPrefix;
  for (auto& [name, t] : contents.tensors) {
    if (name.rfind(prefix, 0) == 0) optimizer_state[name.substr(prefix.size())] = t;
    else model_state[name] = t;
  }
  try {
    model.load_state_dict(model_state, /*strict=*/true);
    optimizer.load_state_dict(optimizer_state);
  } catch (const mms::Error& e) {
    mms::fail(path, ": ", e.what());
  }
  return state;
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
