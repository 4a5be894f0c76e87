#include "run.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "evaluate.h"
#include "precision.h"
#include "tensor/error.h"

namespace mmsft {

namespace fs = std::filesystem;

namespace {
std::string fixed(double x, int digits) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, x);
  return buffer;
}
}  // namespace

RunResult run_one(const Options& o, const RunData& data, const std::atomic<bool>* stop, const Logger& log) {
  const auto start = std::chrono::steady_clock::now();
  fs::create_directories(o.out);
  auto model = build_model(o, data);
  Trainer trainer(o, data, model);
  if (o.resume) {
    trainer.resume();
    log(mms::concat("resumed from ", trainer.checkpoint_path(), " at step ", trainer.step(), "/",
                    trainer.total_steps()));
  }
  log(mms::concat("model: ", o.model.empty() ? "small random CLIP" : o.model, ", ", model->num_parameters(),
                  " parameters (", trainer.trainable_parameters(), " trainable); objective ", o.objective,
                  o.ablate.empty() ? "" : ", ablate " + o.ablate, o.trim_text ? ", texts trimmed" : "", "; ",
                  trainer.total_steps(), " steps of ",
                  o.batch_lists, " lists x ", o.list_size, " (", trainer.batches_per_epoch(), " per epoch); device ",
                  o.device, o.precision == "fp32" ? "" : ", precision " + o.precision));

  RunResult result;
  result.checkpoint = trainer.checkpoint_path();
  if (stop && stop->load()) {
    // Asked to stop during the setup (loading, tokenizing, building the model): no step
    // is taken, and a resumed run's checkpoint already holds this one.
    result.end = Trainer::End::Interrupted;
    result.steps = trainer.step();
    return result;
  }
  result.end = trainer.train(-1, stop);
  result.steps = trainer.step();
  if (result.end != Trainer::End::Finished) {
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }

  trainer.validate_if_never_done();  // a resumed run that had already finished
  Evaluator test(data.test, data, o.ablate, o.trim_text);
  const EvalResult eval = [&] {
    const PrecisionScope precision(o.precision);  // scored in the precision it trained in
    return test.run(*model);
  }();
  if (o.trim_text) {
    const TrimTally& t = trainer.text_trim();
    log(mms::concat("--trim-text: training texts cut to ", fixed(t.mean_length(), 2), " of ", t.context_length,
                    " tokens on average over ", t.batches, " batches (", fixed(100.0 * t.saved_fraction(), 1),
                    "% of text tokens saved); test ", fixed(test.text_trim().mean_length(), 2), " (",
                    fixed(100.0 * test.text_trim().saved_fraction(), 1), "% saved)"));
  }
  result.test = eval.metrics;
  result.random = random_scorer_metrics(eval.pairs, o.seed);
  write_predictions_jsonl((fs::path(o.out) / "predictions_test.jsonl").string(), eval.pairs);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::ordered_json metrics;
  metrics["split"] = "test";
  const nlohmann::json test_metrics = mms::losses::metrics_to_json(eval.metrics);
  for (auto it = test_metrics.begin(); it != test_metrics.end(); ++it) metrics[it.key()] = it.value();
  metrics["seed"] = o.seed;
  metrics["objective"] = o.objective;
  metrics["steps"] = result.steps;
  metrics["wall_seconds"] = result.seconds;
  metrics["data_root"] = data.root;
  metrics["vocab"] = data.vocab_source;
  metrics["inputs"] = data.inputs_json();
  metrics["config"] = o.to_json();
  metrics["random_scorer"] = mms::losses::metrics_to_json(*result.random);
  if (o.trim_text) metrics["text_trim"] = {{"train", trainer.text_trim().to_json()}, {"test", test.text_trim().to_json()}};
  if (trainer.last_validation()) metrics["val"] = mms::losses::metrics_to_json(*trainer.last_validation());
  write_file_atomically((fs::path(o.out) / "metrics.json").string(), metrics.dump(2) + "\n");
  return result;
}

}  // namespace mmsft
