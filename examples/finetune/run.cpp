#include "run.h"

#include <chrono>
#include <filesystem>

#include "evaluate.h"
#include "tensor/error.h"

namespace mmsft {

namespace fs = std::filesystem;

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
                  o.ablate.empty() ? "" : ", ablate " + o.ablate, "; ", trainer.total_steps(), " steps of ",
                  o.batch_lists, " lists x ", o.list_size, " (", trainer.batches_per_epoch(), " per epoch); device ",
                  o.device));

  RunResult result;
  result.checkpoint = trainer.checkpoint_path();
  result.end = trainer.train(-1, stop);
  result.steps = trainer.step();
  if (result.end != Trainer::End::Finished) {
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }

  Evaluator test(data.test, data, o.ablate);
  const EvalResult eval = test.run(*model);
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
  metrics["config"] = o.to_json();
  metrics["random_scorer"] = mms::losses::metrics_to_json(*result.random);
  if (trainer.last_validation()) metrics["val"] = mms::losses::metrics_to_json(*trainer.last_validation());
  write_file_atomically((fs::path(o.out) / "metrics.json").string(), metrics.dump(2) + "\n");
  return result;
}

}  // namespace mmsft
