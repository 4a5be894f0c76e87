// bench/step --config default: the finetune program's built-in default run, built by
// the finetune program's own code (its Options defaults, its synthetic-data cache and
// BPE vocabulary, its build_model), so the benchmark can never drift from what
// `finetune` with no arguments trains. The three source files are compiled in here
// (as tests/test_finetune_resume does with all of examples/finetune/) rather than
// copied, so no size, rate or weight is written twice.
#include "../../examples/finetune/options.cpp"
#include "../../examples/finetune/precision.cpp"
#include "../../examples/finetune/setup.cpp"

#include "finetune_default.h"

namespace mmsbench {

StepSpec default_finetune_step(bool verbose) {
  const mmsft::Options o;  // the defaults `finetune` runs with
  o.validate();
  const mmsft::Logger log = [verbose](const std::string& line) {
    if (verbose) std::fprintf(stderr, "%s\n", line.c_str());
  };
  const mmsft::RunData data = mmsft::load_run_data(o, log);
  StepSpec s;
  s.model = mmsft::build_model(o, data);
  s.config = s.model->config;
  s.head = s.model->head->config;
  s.lists = o.batch_lists;
  s.list_size = o.list_size;
  s.text_len = data.context_length;
  s.lr = o.lr;
  s.weight_decay = o.weight_decay;
  s.grad_clip = o.grad_clip;
  s.weights = o.weights();
  return s;
}

}  // namespace mmsbench
