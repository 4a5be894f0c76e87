// bench/step: one MM-SCALE fine-tuning step, timed. The same model, head, loss and
// optimizer as ../shared/bench/torch_step.py (the PyTorch peer), so the two can run in
// one call on one card and be quoted as a ratio:
//   CLIP ViT-B/32 towers with random weights, B lists x K scenarios, 224 px images,
//   77-token texts, pair head (concat[i,t,i*t] -> Linear -> GELU -> 1+4*sigmoid score,
//   3-way modality logits), loss ListMLE + 0.5*MSE + 0.1*CE, AdamW (lr 1e-5, wd 0.01).
// --config default instead times the finetune program's built-in default run (its small
// CLIP, its head with dropout, its batch, lr, weight decay, loss weights and global-norm
// clipping: bench/step/finetune_default.cpp); its CPU peer is tools/bench_step_torch_cpu.py,
// which reads the sizes from `step --config default --print-config`.
// Prints one JSON line per batch size (median/min/max ms over the timed steps, pairs/s,
// achieved TFLOP/s by bench/step/flops.h's count, MFU against a bf16 cuBLAS GEMM
// measured in the same run, peak device memory) and a table at the end.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "autograd/api.h"
#include "finetune_default.h"
#include "flops.h"
#include "losses/objective.h"
#include "nn/optim.h"
#include "tensor/profile.h"
#include "peak_gemm.h"
#include "vlm/pair_scorer.h"

#ifdef MMS_WITH_CUDA
#include "cuda/gemm.h"
#include "cuda/graph.h"
#include "cuda/memory.h"
#include "cuda/runtime.h"
#endif

using namespace mms;

namespace {

struct Result {
  int64_t lists = 0;
  double median_ms = 0, min_ms = 0, max_ms = 0, pairs_per_s = 0, tflops = 0, mfu = -1, peak_mib = 0;
  double final_loss = 0;
  double host_syncs_per_step = 0;  // times the host waited for the device inside a step
  int64_t graph_nodes = 0;          // --graph: nodes of the captured step (0: eager)
  double graph_capture_ms = 0;
  std::string graph_error;          // why --graph fell back to eager, if it did
  std::string profile;              // --profile: the op and kernel tables of one more step
};

vlm::CLIPConfig config_named(const std::string& name) {
  if (name == "vitb32") return vlm::CLIPConfig{};  // the class defaults are ViT-B/32
  if (name == "tiny") return vlm::tiny_clip_config();
  fail("bench/step: unknown --config '", name, "' (vitb32 or tiny)");
}

double peak_memory_mib(Device device) {
#ifdef MMS_WITH_CUDA
  if (device.is_cuda()) return static_cast<double>(mms::cuda::pool_stats().peak_bytes_in_use) / (1 << 20);
#endif
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // peak RSS of the process
}

void reset_peak_memory(Device device) {
#ifdef MMS_WITH_CUDA
  if (device.is_cuda()) mms::cuda::pool_reset_peak();
#endif
}

// What one timed step is: the model (built by the caller), the batch shape and the
// optimisation settings.
using mmsbench::StepSpec;

StepSpec peer_spec(const vlm::CLIPConfig& config, int64_t list_size, int64_t text_len, uint64_t seed) {
  StepSpec s;
  s.config = config;
  s.head.hidden_size = config.projection_dim;
  s.head.dropout = 0.0;  // the peer's head has no dropout
  s.model = std::make_shared<vlm::PairScorer>(config, s.head, seed);
  s.list_size = list_size;
  s.text_len = text_len;
  return s;
}

Result run(const StepSpec& spec, Device device, int64_t lists, int warmup, int steps, uint64_t seed,
           bool use_graph, bool profile) {
  const vlm::CLIPConfig& config = spec.config;
  const int64_t list_size = spec.list_size, text_len = spec.text_len;
  auto model = spec.model;
  model->to(device);
  model->train();
  nn::AdamWOptions adam;
  adam.lr = spec.lr;
  // A replayed graph must not freeze AdamW's step count: keep it (and lr) on the device.
  adam.capturable = use_graph && device.is_cuda();
  nn::AdamW optimizer(nn::decay_param_groups(*model, spec.weight_decay), adam);
  const std::vector<Tensor> params = model->parameters();

  const int64_t texts = lists * list_size;
  const int64_t size = config.vision.image_size;
  Tensor pixels = randn({lists, 3, size, size}, seed + 1, 0, DType::Float32, device);
  // token ids in [0, 49406) with the end-of-text id last, as the peer does
  Tensor ids = ops::cast(ops::mul_scalar(rand({texts, text_len}, seed + 2, 0, DType::Float64),
                                         static_cast<double>(config.text.vocab_size - 2)),
                         DType::Int64);
  {
    Tensor last = ops::narrow(ids, 1, text_len - 1, 1);
    ops::fill_(last, static_cast<double>(config.text.eos_token_id < config.text.vocab_size
                                             ? config.text.eos_token_id
                                             : config.text.vocab_size - 1));
  }
  // Token ids, mask and labels stay on the host, where a data loader produces them: the
  // text tower and the losses read them there and upload what the GPU needs without
  // waiting (vlm/clip_model.h, losses/objective.h), so the step never stalls the host.
  Tensor mask = ones({texts, text_len}, DType::Int64);
  Tensor gold = ops::add(ops::cast(ops::add_scalar(ops::mul_scalar(rand({lists, list_size}, seed + 3), 5.0), 1.0), DType::Int64).to(DType::Float32),
                         ops::mul_scalar(rand({lists, list_size}, seed + 4), 0.01));
  gold = ops::clamp(gold, 1.0, 5.0);
  Tensor modality = ops::cast(ops::mul_scalar(rand({lists, list_size}, seed + 5, 0, DType::Float64), 2.999),
                              DType::Int64);
  const losses::ObjectiveWeights weights = spec.weights;

  losses::ObjectiveResult last;  // the loss is read once, after the timed steps
  // One step; with `loss_out` (the graph's body) the loss is copied there and every
  // tensor the step made is released inside it (cuda/graph.h's rules).
  auto step = [&](int index, Tensor* loss_out) {
    auto out = model->forward(pixels, ids, mask, list_size);
    losses::ObjectiveInputs in;
    in.scores = reshape(out.score, {lists, list_size});
    in.gold = gold;
    in.modality_logits = reshape(out.modality_logits, {lists, list_size, 3});
    in.modality_targets = modality;
    in.tie_seed = static_cast<uint64_t>(index);
    losses::ObjectiveResult result = losses::compute_objective(weights, in, losses::HostReads::Deferred);
    optimizer.zero_grad();
    result.total.backward();
    if (spec.grad_clip > 0) nn::clip_grad_norm_deferred(params, spec.grad_clip);  // no host read
    optimizer.step();
    if (loss_out != nullptr) {
      ops::copy_(*loss_out, result.total.detach());
      optimizer.zero_grad();
    } else {
      last = std::move(result);
    }
  };

  for (int i = 0; i < warmup; ++i) step(i, nullptr);
  device_synchronize(device);
  Result r;
#ifdef MMS_WITH_CUDA
  // --graph: capture one step (after the eager warm-up created the optimizer state, its
  // device step count and cuBLAS's workspace) and time replays of it. AdamW runs in
  // capturable mode (step count and lr read from the device), so replays are real
  // training steps; frozen into the graph are the batch and the ListMLE tie seed. A
  // capture that fails is reported and the run falls back to eager steps.
  std::unique_ptr<mms::cuda::CapturedGraph> graph;
  Tensor graph_loss;
  if (use_graph && device.is_cuda()) {
    MMS_CHECK(warmup >= 1, "bench/step: --graph needs --warmup >= 1 (the eager steps create the optimizer "
                           "state and workspaces, which must not be born inside the graph)");
    optimizer.zero_grad();  // grads and the last result were allocated outside: free them first
    last = losses::ObjectiveResult{};
    mms::cuda::pool_trim();  // the eager warm-up's cached blocks would sit beside the graph's memory
    graph_loss = zeros({}, DType::Float32, device);
    graph = std::make_unique<mms::cuda::CapturedGraph>();
    const auto start = std::chrono::steady_clock::now();
    try {
      graph->capture([&] { step(warmup, &graph_loss); });
      r.graph_nodes = static_cast<int64_t>(graph->node_count());
      r.graph_capture_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    } catch (const std::exception& e) {
      optimizer.zero_grad();  // the failed body's gradients point into the discarded graph
      r.graph_error = e.what();
      graph.reset();
      std::fprintf(stderr, "bench/step: graph capture failed, timing eager steps instead: %s\n", e.what());
    }
  }
  auto timed_step = [&](int index) {
    if (graph) {
      graph->replay();
    } else {
      step(index, nullptr);
    }
  };
#else
  MMS_CHECK(!use_graph || !device.is_cuda(), "bench/step: --graph needs a CUDA build");
  auto timed_step = [&](int index) { step(index, nullptr); };
#endif
  if (use_graph && !device.is_cuda()) r.graph_error = "--graph applies to --device cuda only";
  device_synchronize(device);
  reset_peak_memory(device);
  std::vector<double> times;
  const int64_t syncs_before = device_sync_count();
  for (int i = 0; i < steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    timed_step(warmup + i);
    device_synchronize(device);  // the step is done when the device is done
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  // Host waits inside the steps: the count minus the one device_synchronize per step
  // that ends each timing.
  const int64_t synced_for_timing = device.is_cuda() ? steps : 0;
  const double syncs_per_step =
      static_cast<double>(device_sync_count() - syncs_before - synced_for_timing) / std::max(steps, 1);
  std::sort(times.begin(), times.end());
  r.lists = lists;
  r.median_ms = times[times.size() / 2];
  r.min_ms = times.front();
  r.max_ms = times.back();
  r.pairs_per_s = static_cast<double>(texts) / r.median_ms * 1000.0;
  r.tflops = mmsbench::step_flops(config, lists, list_size, text_len, spec.head.hidden_size) / (r.median_ms * 1e-3) / 1e12;
  r.peak_mib = peak_memory_mib(device);
#ifdef MMS_WITH_CUDA
  // A replay's activations live in graph memory, which the pool does not see.
  if (graph) r.peak_mib += static_cast<double>(mms::cuda::graph_memory_high_bytes()) / (1 << 20);
#endif
#ifdef MMS_WITH_CUDA
  if (graph) {
    r.final_loss = graph_loss.item();
  } else
#endif
  {
    last.read_values();
    r.final_loss = last.total_value;
  }
  r.host_syncs_per_step = syncs_per_step;
  if (profile) {
    // One more eager step under the timeline profiler (tensor/profile.h), after the
    // timings so its events cost them nothing.
    MMS_CHECK(!use_graph, "bench/step: --profile times an eager step; drop --graph");
    ProfileScope profiling(device);
    step(warmup + steps, nullptr);
    const ProfileReport report = profiling.end();
    char head[160];
    std::snprintf(head, sizeof head, "\nprofile of one step, B = %lld (median unprofiled step: %.2f ms)\n",
                  static_cast<long long>(lists), r.median_ms);
    r.profile = head + format_profile(report, 30);
  }
  return r;
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) values.push_back(std::stoll(item));
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"One MM-SCALE fine-tuning step, timed (peer: ../shared/bench/torch_step.py)"};
  std::string device_name = "cuda", mode = "fp32", config_name = "vitb32", batches = "8,32,128";
  int64_t list_size = 4, text_len = 77;
  int steps = 20, warmup = 5;
  uint64_t seed = 0;
  app.add_option("--device", device_name, "cpu or cuda");
  app.add_option("--mode", mode, "fp32 | tf32 | bf16");
  bool print_config = false, use_graph = false, profile = false;
  app.add_flag("--graph", use_graph,
               "CUDA: capture one step as a CUDA graph after the warm-up and time its replays (cuda/graph.h)");
  app.add_flag("--profile", profile,
               "after the timings, profile one more step and print where its time goes, by op (CPU and CUDA) and "
               "by kernel (CUDA) (tensor/profile.h)");
  app.add_option("--config", config_name,
                 "vitb32 (the peer's model), tiny, or default (the finetune program's default run: its model, "
                 "batch, K, L, lr, loss weights and clipping; --batch-lists/--list-size/--text-len/--seed ignored)");
  app.add_option("--batch-lists", batches, "comma-separated B values");
  app.add_flag("--print-config", print_config,
               "print the chosen step's settings as one JSON line and exit (the PyTorch peers read it)");
  app.add_option("--list-size", list_size, "K");
  app.add_option("--text-len", text_len, "tokens per text");
  app.add_option("--steps", steps, "timed steps");
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--seed", seed);
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = Device::parse(device_name);
    if (device.is_cuda() && !cuda_available() && !print_config) {
      std::printf("bench/step: no CUDA device here (skipped)\n");
      return 0;
    }
    MMS_CHECK(mode == "fp32" || mode == "tf32" || mode == "bf16", "bench/step: unknown --mode '", mode, "'");
    // bf16: every linear/matmul of the model, and attention (on CUDA our tensor-core
    // tiles, or QK^T / PV GEMMs on its GEMM path), runs under autocast (bf16 operands, fp32
    // accumulation, fp32 master weights and AdamW state; autograd/autocast.h), as the
    // peer's torch.autocast(bfloat16). Any float32 GEMM left runs with TF32 on (the CPU
    // has no TF32; its attention takes the fused float32 kernel).
    std::optional<AutocastGuard> autocast;  // held for every timed step of this thread
    if (mode == "bf16") autocast.emplace(DType::BFloat16);
    const std::string gemm_precision =
        mode != "bf16" ? mode
                       : std::string("bf16 linear/matmul (autocast), ") +
                             (bf16_activations_enabled() ? "bf16 activations (MLP; q/k/v where attention is bf16), "
                                                         : "float32 activations (MMS_BF16_ACTIVATIONS=0), ") +
                             (!device.is_cuda() || ops::attention_path() == ops::AttentionPath::Fused
                                  ? "fp32 fused attention"
                                  : ops::attention_path() == ops::AttentionPath::Cudnn
                                        ? "bf16 attention (cuDNN fused, MMS_ATTENTION=cudnn)"
                                  : ops::attention_path() == ops::AttentionPath::Tiles
                                        ? "bf16 attention (tensor-core tiles, MMS_ATTENTION=tiles)"
                                  : ops::attention_path() == ops::AttentionPath::Auto
                                        ? "bf16 attention (tensor-core tiles, the default)"
                                        : "bf16 attention (GEMM path, MMS_ATTENTION=gemm)");
#ifdef MMS_WITH_CUDA
    mms::cuda::set_tf32_enabled(mode == "tf32" || mode == "bf16");
#endif
    const bool finetune_default = config_name == "default";
    // The step for batch size B: the default run's (built by finetune's own code) or the peer's.
    auto make_spec = [&](int64_t lists, int64_t* lists_used) {
      StepSpec spec;
      if (finetune_default) {
        spec = mmsbench::default_finetune_step(!print_config);
        *lists_used = spec.lists;
      } else {
        spec = peer_spec(config_named(config_name), list_size, text_len, seed);
        *lists_used = lists;
      }
      return spec;
    };
    if (finetune_default) batches = "0";  // the default's own B
    if (print_config) {
      int64_t lists = 0;
      const StepSpec spec = make_spec(0, &lists);
      const auto& v = spec.config.vision;
      const auto& t = spec.config.text;
      nlohmann::json j = {
          {"config", config_name}, {"batch_lists", lists}, {"list_size", spec.list_size},
          {"text_len", spec.text_len}, {"lr", spec.lr}, {"weight_decay", spec.weight_decay},
          {"grad_clip", spec.grad_clip}, {"head_hidden", spec.head.hidden_size}, {"head_dropout", spec.head.dropout},
          {"w_listmle", spec.weights.listmle}, {"w_mse", spec.weights.mse}, {"w_modality", spec.weights.modality},
          {"projection_dim", spec.config.projection_dim},
          {"text", {{"vocab_size", t.vocab_size}, {"hidden_size", t.hidden_size},
                    {"intermediate_size", t.intermediate_size}, {"num_hidden_layers", t.num_hidden_layers},
                    {"num_attention_heads", t.num_attention_heads},
                    {"max_position_embeddings", t.max_position_embeddings}, {"hidden_act", t.hidden_act},
                    {"bos_token_id", t.bos_token_id}, {"eos_token_id", t.eos_token_id},
                    {"pad_token_id", t.pad_token_id}}},
          {"vision", {{"hidden_size", v.hidden_size}, {"intermediate_size", v.intermediate_size},
                      {"num_hidden_layers", v.num_hidden_layers}, {"num_attention_heads", v.num_attention_heads},
                      {"image_size", v.image_size}, {"patch_size", v.patch_size}, {"hidden_act", v.hidden_act}}}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    const double peak = device.is_cuda() ? mmsbench::measure_bf16_gemm_tflops() : -1.0;
    std::string card = "cpu";
#ifdef MMS_WITH_CUDA
    if (device.is_cuda()) card = mms::cuda::device_info().name;
#endif
    std::vector<Result> results;
    for (int64_t requested : parse_list(batches)) {
      int64_t lists = 0;
      const StepSpec spec = make_spec(requested, &lists);
      list_size = spec.list_size;
      text_len = spec.text_len;
      Result r = run(spec, device, lists, warmup, steps, seed, use_graph, profile);
      if (peak > 0) r.mfu = r.tflops / peak;
      results.push_back(r);
      nlohmann::json line = {{"engine", "mmscale"}, {"device", card}, {"mode", mode},
                             {"gemm_precision", gemm_precision}, {"config", config_name},
                             {"batch_lists", lists}, {"list_size", list_size}, {"text_len", text_len},
                             {"median_ms", r.median_ms}, {"min_ms", r.min_ms}, {"max_ms", r.max_ms},
                             {"pairs_per_s", r.pairs_per_s}, {"tflops", r.tflops}, {"bf16_peak_tflops", peak},
                             {"mfu", r.mfu}, {"peak_mem_mib", r.peak_mib}, {"loss", r.final_loss},
                             {"host_syncs_per_step", r.host_syncs_per_step}, {"graph", use_graph},
                             {"graph_nodes", r.graph_nodes}, {"graph_capture_ms", r.graph_capture_ms}};
      if (!r.graph_error.empty()) line["graph_error"] = r.graph_error;
      std::printf("%s\n", line.dump().c_str());
      if (!r.profile.empty()) std::printf("%s\n", r.profile.c_str());
      std::fflush(stdout);
    }
    std::printf("\nmmscale step on %s, %s, K=%lld, L=%lld (bf16 GEMM peak measured: %.0f TFLOP/s)\n", card.c_str(),
                gemm_precision.c_str(), (long long)list_size, (long long)text_len, peak);
    std::printf("%6s %10s %10s %10s %12s %9s %7s %10s\n", "B", "median_ms", "min_ms", "max_ms", "pairs/s", "TFLOP/s",
                "MFU", "peak_MiB");
    for (const Result& r : results)
      std::printf("%6lld %10.2f %10.2f %10.2f %12.1f %9.2f %6.1f%% %10.1f\n", (long long)r.lists, r.median_ms, r.min_ms,
                  r.max_ms, r.pairs_per_s, r.tflops, r.mfu > 0 ? 100 * r.mfu : 0.0, r.peak_mib);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench/step: %s\n", e.what());
    return 1;
  }
  return 0;
}
