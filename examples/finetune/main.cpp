// finetune: the main job. Fine-tunes a CLIP pair scorer on MM-SCALE with the listwise
// objective (ListMLE + MSE + modality CE) and prints the test metrics.
//
//   finetune                                   the built-in default (synthetic data,
//                                              small random CLIP; a few minutes on 2 cores)
//   finetune --data ROOT --model DIR [--vocab V] [...]   the real thing
//   finetune --compare [--seeds 3]             listmle+mse vs mse vs bce vs pairwise
//   finetune ... --resume                      continue OUT/checkpoint.safetensors
//
// Files in --out: metrics.json, predictions_test.jsonl, train_log.csv, curves.svg,
// checkpoint.safetensors (layout: checkpoint.h). Exit status: 0 done, 1 error,
// 2 bad options, 3 non-finite loss/gradient, 130 interrupted (checkpoint saved).
#include <omp.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "checkpoint.h"
#include "compare.h"
#include "evaluate.h"
#include "options.h"
#include "run.h"
#include "setup.h"
#include "shell_quote.h"
#include "trainer.h"

namespace {

std::atomic<bool> g_stop{false};

// First SIGINT/SIGTERM: ask the loop to finish its step and save. The handler then
// restores the default action, so a second signal ends a stuck process at once.
extern "C" void on_signal(int signo) {
  g_stop.store(true);
  std::signal(signo, SIG_DFL);
}

}  // namespace

int main(int argc, char** argv) {
  mmsft::Options options;
  int exit_code = 0;
  if (!mmsft::parse_options(argc, argv, &options, &exit_code)) return exit_code;
  const int threads = options.threads >= 0 ? options.threads : (options.model.empty() ? 1 : 0);
  if (threads > 0) omp_set_num_threads(threads);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  const mmsft::Logger log = [&](const std::string& line) {
    if (!options.quiet) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
  };

  try {
    if (!options.resume && !options.compare)
      mmsft::refuse_to_overwrite_an_unfinished_run((std::filesystem::path(options.out) / "checkpoint.safetensors").string());
    const mmsft::RunData data = mmsft::load_run_data(options, log);
    if (options.compare) {
      if (!mmsft::run_compare(options, data, &g_stop, log)) {
        std::fprintf(stderr, "finetune: interrupted during --compare; the finished runs are in %s/compare\n",
                     options.out.c_str());
        return 130;
      }
      return 0;
    }
    const mmsft::RunResult r = mmsft::run_one(options, data, &g_stop, log);
    if (r.end == mmsft::Trainer::End::Interrupted && r.steps == 0) {
      std::fprintf(stderr, "finetune: interrupted before the first step; nothing to save\n");
      return 130;
    }
    if (r.end == mmsft::Trainer::End::Interrupted) {
      std::fprintf(stderr,
                   "finetune: interrupted after step %lld; checkpoint saved to %s\n"
                   "resume with:\n  %s\n",
                   static_cast<long long>(r.steps), r.checkpoint.c_str(), mmsft::resume_command(argc, argv).c_str());
      return 130;
    }
    std::printf("\n%s", mmsft::format_metrics_table(*r.test, "test metrics", &*r.random).c_str());
    std::printf("\ntraining + test evaluation took %.1f s; outputs in %s (metrics.json, predictions_test.jsonl, "
                "train_log.csv, curves.svg, checkpoint.safetensors)\n",
                r.seconds, options.out.c_str());
    return 0;
  } catch (const mmsft::NonFiniteError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "finetune: stopped: %s\nthe last good checkpoint (if one was saved) is %s/checkpoint.safetensors\n",
                 e.what(), options.out.c_str());
    return 3;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "finetune: error: %s\n", e.what());
    return 1;
  }
}
