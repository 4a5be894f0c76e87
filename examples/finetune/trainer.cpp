#include "trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>

#include "autograd/api.h"
#include "batch.h"
#include "precision.h"
#include "data/rng.h"
#include "tensor/error.h"

namespace mmsft {

namespace fs = std::filesystem;
using mms::Tensor;

namespace {

// The dropout generator's stream for a run, distinct from the weight-init stream.
constexpr uint64_t kDropoutStream = 0xD50F0B5EEDull;

// ListMLE breaks ties in the gold ratings with a seeded shuffle: a function of
// (seed, step) so a resumed run draws the same order.
uint64_t tie_seed(uint64_t seed, int64_t step) {
  return mms::data::SplitMix64(seed, static_cast<uint64_t>(step)).next();
}

bool all_finite(const std::vector<double>& values) {
  for (double v : values)
    if (!std::isfinite(v)) return false;
  return true;
}

std::string describe_terms(const mms::losses::ObjectiveResult& r) {
  return r.to_json().dump();
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

int64_t apply_freezing(mms::vlm::PairScorer& model, const Options& o) {
  const bool freeze = o.freeze_towers || o.train_last_layers >= 0;
  int64_t trainable = 0;
  for (auto& [name, p] : model.named_parameters()) {
    bool train = true;
    if (freeze && (starts_with(name, "vision_model.") || starts_with(name, "text_model."))) {
      train = false;
      if (o.train_last_layers > 0) {
        const bool vision = starts_with(name, "vision_model.");
        const int64_t layers = vision ? model.config.vision.num_hidden_layers : model.config.text.num_hidden_layers;
        const std::string tower = vision ? "vision_model." : "text_model.";
        for (int64_t l = std::max<int64_t>(0, layers - o.train_last_layers); l < layers; ++l)
          if (starts_with(name, tower + "encoder.layers." + std::to_string(l) + ".")) train = true;
        if (name == "vision_model.post_layernorm.weight" || name == "vision_model.post_layernorm.bias" ||
            name == "text_model.final_layer_norm.weight" || name == "text_model.final_layer_norm.bias")
          train = true;
      }
    }
    Tensor(p).set_requires_grad(train);
    trainable += train;
  }
  return trainable;
}

Trainer::Trainer(const Options& o, const RunData& data, std::shared_ptr<mms::vlm::PairScorer> model)
    : options_(o), data_(data), model_(std::move(model)), weights_(o.weights()),
      empty_text_(data.tokenizer->encode("", data.context_length)), device_(mms::Device::parse(o.device)) {
  apply_freezing(*model_, o);
  std::vector<mms::nn::ParamGroup> groups;
  for (mms::nn::ParamGroup g : mms::nn::decay_param_groups(*model_, o.weight_decay)) {
    mms::nn::NamedTensors kept;
    for (auto& [name, p] : g.params)
      if (p.requires_grad()) {
        kept.emplace_back(name, p);
        trainable_.push_back(p);
        trainable_names_.push_back(name);
      }
    g.params = std::move(kept);
    if (!g.params.empty()) groups.push_back(std::move(g));
  }
  MMS_CHECK(!trainable_.empty(), "finetune: no trainable parameters");
  mms::nn::AdamWOptions ao;
  ao.lr = o.lr;
  optimizer_ = std::make_unique<mms::nn::AdamW>(std::move(groups), ao);

  mms::data::LoaderOptions lo;
  lo.sampler.batch_lists = o.batch_lists;
  lo.sampler.list_size = o.list_size;
  lo.sampler.seed = o.seed;
  lo.sampler.data_fraction = o.data_fraction;
  lo.image = data.image;
  lo.context_length = data.context_length;
  lo.threads = 1;  // images are cached after the first epoch; the cores go to the model
  loader_ = std::make_unique<mms::data::BatchLoader>(data.train, *data.tokenizer, lo);
  const int64_t per_epoch = loader_->sampler().batches_per_epoch();
  MMS_CHECK(per_epoch > 0, "finetune: the training split has no images");

  total_steps_ = o.steps > 0 ? o.steps : o.epochs * per_epoch;
  schedule_.base_lr = o.lr;
  schedule_.total_steps = total_steps_;
  schedule_.warmup_steps = o.warmup >= 0 ? std::min(o.warmup, total_steps_) : total_steps_ / 20;
  schedule_.min_lr = 0.0;
  schedule_.validate();
  eval_every_ = o.eval_every > 0 ? o.eval_every : per_epoch;
  mms::default_generator().set_state(o.seed ^ kDropoutStream, 0);
  model_->train();
}

std::string Trainer::checkpoint_path() const { return (fs::path(options_.out) / "checkpoint.safetensors").string(); }

int64_t Trainer::trainable_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : trainable_) n += p.numel();
  return n;
}

void Trainer::resume() {
  const std::string path = checkpoint_path();
  MMS_CHECK(fs::exists(path), "--resume: there is no checkpoint at ", path, " (run without --resume to start)");
  CheckpointFile file = read_checkpoint(path);
  const TrainingState& state = file.state;
  // Settings first: a checkpoint of another --width would otherwise fail on its tensor
  // shapes, which hides the setting that differs.
  const nlohmann::json mine = options_.trajectory_json();
  // A checkpoint written before a setting existed (e.g. trim_text) ran with its default.
  const nlohmann::json defaults = Options().trajectory_json();
  std::string differences;
  for (auto it = mine.begin(); it != mine.end(); ++it) {
    const nlohmann::json theirs = state.trajectory.value(it.key(), defaults.value(it.key(), nlohmann::json()));
    if (theirs != it.value())
      differences += " " + it.key() + " (checkpoint " + theirs.dump() + ", now " + it.value().dump() + ");";
  }
  // The inputs, by content rather than by path (a moved dataset is the same dataset).
  if (state.inputs.is_object()) {
    if (state.inputs.value("train", "") != data_.train_fingerprint)
      differences += " the training split (" + data_.root + " differs from the data the checkpoint trained on);";
    if (state.inputs.value("tokenizer", "") != data_.tokenizer_fingerprint)
      differences += " the tokenizer (" + data_.vocab_source + " differs from the checkpoint's " + state.vocab + ");";
  }
  MMS_CHECK(differences.empty(), "--resume: ", path, " was written by a run with other settings:", differences,
            " resume with the same options and inputs, or use another --out");
  MMS_CHECK(state.step <= total_steps_, "--resume: the checkpoint is at step ", state.step, " but the run has ",
            total_steps_, " steps");
  apply_checkpoint(file, *model_, *optimizer_);
  step_ = state.step;
  saved_step_ = step_;
  mms::default_generator().set_state(state.rng_seed, state.rng_offset);
  log_ = state.log;
  if (!state.text_trim.is_null()) trim_tally_ = TrimTally::from_json(state.text_trim);
  model_->train();
}

void Trainer::validate_if_never_done() {
  if (!last_val_) validate();
}

LogRow Trainer::train_step(const mms::data::ListBatch& host_batch) {
  const PrecisionScope precision(options_.precision);  // forward, losses and backward
  const int64_t step_number = step_ + 1;  // 1-based in messages and logs
  mms::data::ListBatch batch = host_batch;
  trim_tally_.add(prepare_batch(batch, options_.ablate, empty_text_, options_.trim_text));
  const BatchTensors t = to_tensors(batch, device_);
  const double lr = schedule_.lr(step_);
  optimizer_->set_lr(lr);

  const auto out = model_->forward(t.pixels, t.input_ids, t.attention_mask, t.list_size);
  const std::vector<double> scores = out.score.to_vector<double>();
  if (!all_finite(scores))
    throw NonFiniteError(mms::concat("step ", step_number, ": the model's scores are not finite (NaN/inf in the "
                                     "forward pass, before any loss term); nothing was updated"));

  mms::losses::ObjectiveInputs in;
  in.scores = reshape(out.score, {t.lists, t.list_size});
  in.gold = t.gold;
  in.valid = t.valid;
  in.modality_logits = reshape(out.modality_logits, {t.lists, t.list_size, 3});
  in.modality_targets = t.modality_targets;
  in.bce_logits = reshape(out.score_logit, {t.lists, t.list_size});
  in.tie_seed = tie_seed(options_.seed, step_);
  mms::losses::ObjectiveResult r = mms::losses::compute_objective(weights_, in);

  if (step_number == options_.inject_nan_at_step) {  // testing hook: the first term goes NaN
    for (auto* term : {&r.listmle, &r.mse, &r.modality, &r.bce, &r.pairwise})
      if (*term) {
        **term = std::nan("");
        break;
      }
    r.total_value = std::nan("");
  }
  const std::pair<const char*, std::optional<double>> terms[] = {
      {"listmle", r.listmle}, {"mse", r.mse}, {"modality", r.modality}, {"bce", r.bce}, {"pairwise", r.pairwise}};
  for (const auto& [name, value] : terms)
    if (value && !std::isfinite(*value))
      throw NonFiniteError(mms::concat("step ", step_number, ": the ", name, " loss is ", *value, " (terms ",
                                       describe_terms(r), "); nothing was updated"));
  if (!std::isfinite(r.total_value))
    throw NonFiniteError(mms::concat("step ", step_number, ": the total loss is ", r.total_value, " (terms ",
                                     describe_terms(r), "); nothing was updated"));

  r.total.backward();
  const double max_norm = options_.grad_clip > 0 ? options_.grad_clip : std::numeric_limits<double>::infinity();
  const double grad_norm = mms::nn::clip_grad_norm_(trainable_, max_norm);
  if (!std::isfinite(grad_norm)) {
    std::string culprit = "?";
    for (size_t i = 0; i < trainable_.size(); ++i) {
      const Tensor g = trainable_[i].grad();
      if (g.defined() && !all_finite(g.to_vector<double>())) {
        culprit = trainable_names_[i];
        break;
      }
    }
    optimizer_->zero_grad();
    throw NonFiniteError(mms::concat("step ", step_number, ": the gradient is not finite (first in ", culprit,
                                     "; loss terms ", describe_terms(r), "); nothing was updated"));
  }
  optimizer_->step();
  optimizer_->zero_grad();
  step_ = step_number;

  LogRow row;
  row.step = step_;
  row.loss = r.total_value;
  row.loss_listmle = r.listmle.value_or(0);
  row.loss_mse = r.mse.value_or(0);
  row.loss_modality = r.modality.value_or(0);
  row.loss_bce = r.bce.value_or(0);
  row.loss_pairwise = r.pairwise.value_or(0);
  row.lr = lr;
  row.grad_norm = grad_norm;
  return row;
}

void Trainer::validate() {
  if (evaluate_validation()) write_reports();
}

bool Trainer::evaluate_validation() {
  if (data_.val.images.empty()) return false;
  if (!val_evaluator_) val_evaluator_ = std::make_unique<Evaluator>(data_.val, data_, options_.ablate, options_.trim_text);
  const EvalResult result = [&] {
    const PrecisionScope precision(options_.precision);
    return val_evaluator_->run(*model_);
  }();
  last_val_ = result.metrics;
  if (!log_.empty() && log_.back().step == step_) {
    log_.back().val_ndcg5 = result.metrics.ndcg_at_5;
    log_.back().val_pairwise_acc = result.metrics.pairwise_acc_d0;
  }
  if (progress_) {
    const int64_t per_epoch = batches_per_epoch();
    progress_->message(mms::concat("eval  step ", step_, "/", total_steps_, " (epoch ",
                                   (step_ + per_epoch - 1) / per_epoch, "): val ",
                                   format_metrics_line(result.metrics)));
  }
  return true;
}

void Trainer::write_reports() const {
  fs::create_directories(options_.out);
  write_train_log((fs::path(options_.out) / "train_log.csv").string(), log_);
  write_curves_svg((fs::path(options_.out) / "curves.svg").string(), log_,
                   "finetune " + options_.objective + (options_.ablate.empty() ? "" : " (ablate " + options_.ablate + ")") +
                       ", seed " + std::to_string(options_.seed));
}

void Trainer::save() {
  fs::create_directories(options_.out);
  TrainingState state;
  state.step = step_;
  state.rng_seed = mms::default_generator().seed();
  state.rng_offset = mms::default_generator().offset();
  state.options = options_.to_json();
  state.trajectory = options_.trajectory_json();
  state.vocab = fs::absolute(data_.vocab_source).string();
  state.log = log_;
  state.total_steps = total_steps_;
  state.inputs = data_.inputs_json();
  if (options_.trim_text) state.text_trim = trim_tally_.to_json();
  save_checkpoint(checkpoint_path(), *model_, *optimizer_, state);
  saved_step_ = step_;
  write_reports();
}

bool Trainer::keep_finished_steps() {
  if (step_ <= saved_step_) return true;
  try {
    save();
    return true;
  } catch (const std::exception&) {
    // The input error that brought us here is the one to report (the caller says the
    // save failed too); the previous checkpoint stays as it was.
    return false;
  }
}

Trainer::End Trainer::train(int64_t until_step, const std::atomic<bool>* stop) {
  const int64_t end = until_step < 0 ? total_steps_ : std::min(until_step, total_steps_);
  if (step_ >= end) return step_ >= total_steps_ ? End::Finished : End::Paused;
  if (!options_.quiet) progress_ = std::make_unique<Progress>(total_steps_, options_.log_every);
  model_->train();
  loader_->start(step_, end - step_);
  mms::data::ListBatch batch;
  auto last = std::chrono::steady_clock::now();
  // An input error (a corrupt image met by the loader or by the validation) comes
  // between steps, with the model at a finished step: save that work first, so fixing
  // the file and --resume continues from here.
  auto input_error = [&](const mms::Error& e) {
    if (step_ == 0) return e;  // nothing trained yet, nothing to keep
    if (options_.compare_part)  // --compare starts an unfinished run over
      return mms::Error(mms::concat(e.what(), "\n(after replacing or repairing that file, rerun the same --compare "
                                    "command: the objectives that finished are reused)"));
    if (keep_finished_steps())
      return mms::Error(mms::concat(e.what(), "\n(the run's ", step_, " finished steps are in ", checkpoint_path(),
                                    ": replace or repair that file and continue with --resume)"));
    return mms::Error(mms::concat(e.what(), "\n(saving the run's ", step_, " finished steps failed too; ",
                                  saved_step_ > 0 ? mms::concat(checkpoint_path(), " holds step ", saved_step_)
                                                  : std::string("no checkpoint was written"),
                                  ")"));
  };
  auto next_batch = [&] {
    try {
      return loader_->next(batch);
    } catch (const mms::Error& e) {
      throw input_error(e);
    }
  };
  try {
    while (step_ < end && next_batch()) {
      LogRow row = train_step(batch);
      const auto now = std::chrono::steady_clock::now();
      const double seconds = std::chrono::duration<double>(now - last).count();
      last = now;
      const double rate = seconds > 0 ? static_cast<double>(batch.num_valid()) / seconds : 0.0;
      pairs_per_second_ = pairs_per_second_ > 0 ? 0.9 * pairs_per_second_ + 0.1 * rate : rate;
      row.pairs_per_second = pairs_per_second_;
      log_.push_back(row);
      if (progress_) progress_->update(step_, row.loss, row.lr, pairs_per_second_);
      if (step_ % eval_every_ == 0 || step_ == total_steps_) {
        bool evaluated = false;
        try {
          evaluated = evaluate_validation();
        } catch (const mms::Error& e) {
          throw input_error(e);  // the validation split's images (reports are not input)
        }
        if (evaluated) write_reports();
      }
      const bool interrupted = stop && stop->load();
      if (interrupted || step_ == end || (options_.save_every > 0 && step_ % options_.save_every == 0)) save();
      if (interrupted) {
        loader_->stop();
        if (progress_) progress_->finish();
        return End::Interrupted;
      }
    }
  } catch (...) {
    loader_->stop();
    if (progress_) progress_->finish();
    throw;
  }
  loader_->stop();
  if (progress_) progress_->finish();
  return step_ >= total_steps_ ? End::Finished : End::Paused;
}

}  // namespace mmsft
