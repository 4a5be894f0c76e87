// The training loop: batches from the prefetching loader, the scorer, the weighted
// objective, AdamW with warmup + cosine, global-norm clipping, periodic validation and
// atomic checkpoints, and the fault rules of a long run:
//   * resume:  a checkpoint holds everything the next step depends on (weights, AdamW
//              moments and step counts, the dropout generator, the step; the sampler,
//              the schedule and the ListMLE tie seed are functions of (seed, step)), so
//              on the CPU a resumed run repeats the uninterrupted one bit for bit;
//   * stop:    when *stop becomes true (SIGINT/SIGTERM) the current step finishes, a
//              checkpoint is written and train() returns Interrupted;
//   * NaN/inf: a non-finite loss term or gradient throws NonFiniteError naming the
//              step and the term (or parameter) before the update, so the weights
//              and the last checkpoint stay good.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "batch.h"
#include "checkpoint.h"
#include "data/batching.h"
#include "evaluate.h"
#include "losses/objective.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "options.h"
#include "progress.h"
#include "report.h"
#include "setup.h"

namespace mmsft {

class NonFiniteError : public mms::Error {
 public:
  using mms::Error::Error;
};

class Trainer {
 public:
  // The model must come from build_model(options, data) (fresh) or be about to be
  // overwritten by resume(). Frozen parameters (--freeze-towers, --train-last-layers)
  // are switched off here.
  Trainer(const Options& options, const RunData& data, std::shared_ptr<mms::vlm::PairScorer> model);

  enum class End { Finished, Paused, Interrupted };

  // Loads OUT/checkpoint.safetensors; throws when it is missing or was written by a run
  // with other trajectory settings (listing them).
  void resume();
  // Trains up to `until_step` (-1 = the whole run) or until *stop turns true. Writes a
  // checkpoint every save_every steps and when it returns.
  End train(int64_t until_step = -1, const std::atomic<bool>* stop = nullptr);
  // Checkpoint + train_log.csv + curves.svg.
  void save();
  // Validates once when no validation ran in this process (a resumed finished run), so
  // metrics.json keeps its "val" block.
  void validate_if_never_done();

  int64_t step() const { return step_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t batches_per_epoch() const { return loader_->sampler().batches_per_epoch(); }
  std::string checkpoint_path() const;
  const std::vector<LogRow>& log() const { return log_; }
  const std::optional<mms::losses::Metrics>& last_validation() const { return last_val_; }
  mms::vlm::PairScorer& model() { return *model_; }
  int64_t trainable_parameters() const;
  // The text tokens of the batches this trainer stepped on (trimmed with --trim-text).
  const TrimTally& text_trim() const { return trim_tally_; }

 private:
  LogRow train_step(const mms::data::ListBatch& batch);
  // Scores the validation split (false when it is empty), then the reports follow.
  void validate();
  bool evaluate_validation();
  // Saves when steps were taken since the last checkpoint. Returns whether the
  // checkpoint now holds the current step; a failing save is not thrown (the caller is
  // already reporting an error).
  bool keep_finished_steps();
  void write_reports() const;

  Options options_;
  const RunData& data_;
  std::shared_ptr<mms::vlm::PairScorer> model_;
  mms::losses::ObjectiveWeights weights_;
  std::vector<mms::Tensor> trainable_;
  std::vector<std::string> trainable_names_;
  std::unique_ptr<mms::nn::AdamW> optimizer_;
  std::unique_ptr<mms::data::BatchLoader> loader_;
  std::unique_ptr<Evaluator> val_evaluator_;
  mms::nn::WarmupCosineSchedule schedule_;
  mms::data::TokenizedText empty_text_;
  mms::Device device_;
  int64_t step_ = 0, total_steps_ = 0, eval_every_ = 0;
  int64_t saved_step_ = 0;  // the step of the last checkpoint this trainer wrote or resumed from
  std::vector<LogRow> log_;
  std::optional<mms::losses::Metrics> last_val_;
  std::unique_ptr<Progress> progress_;
  double pairs_per_second_ = 0;
  TrimTally trim_tally_;
};

// Marks the frozen parameters (requires_grad off) and returns how many tensors stay
// trainable. --freeze-towers: only the projections and the head train.
// --train-last-layers N: also each tower's last N encoder layers and its final norm.
int64_t apply_freezing(mms::vlm::PairScorer& model, const Options& options);

}  // namespace mmsft
