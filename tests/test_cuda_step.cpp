// A whole fine-tuning step on the GPU: the tiny CLIP pair scorer's forward, the combined
// objective, backward and AdamW, against the same step on the CPU, and the property
// the GPU speed rests on: with ids, mask and labels on the host and the objective read
// deferred, the host never waits for the device inside a step (device_sync_count() is
// unchanged), so kernel launches queue ahead of the GPU. Skips visibly without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <vector>

#include "autograd/api.h"
#include "losses/objective.h"
#include "nn/optim.h"
#include "tensor/backend.h"
#include "tensor/profile.h"
#include "vlm/pair_scorer.h"

#ifdef MMS_WITH_CUDA
#include "cuda/graph.h"
#endif

#include "device_test_utils.h"

using namespace mms;

namespace {

constexpr int64_t kLists = 3, kListSize = 4, kTextLen = 9;

// The batch: pixels on `device`; ids, mask and labels on the host (as a loader gives them).
struct Batch {
  Tensor pixels, ids, mask, gold, modality;
};

Batch make_batch(const vlm::CLIPConfig& config, Device device) {
  Batch b;
  const int64_t size = config.vision.image_size, texts = kLists * kListSize;
  b.pixels = randn({kLists, 3, size, size}, 11).to(device);
  std::vector<int64_t> ids(static_cast<size_t>(texts * kTextLen), 0), mask(ids.size(), 1);
  for (int64_t r = 0; r < texts; ++r) {
    const int64_t length = 3 + r % (kTextLen - 3);  // right-padded rows of different lengths
    for (int64_t i = 0; i < kTextLen; ++i) {
      int64_t& id = ids[size_t(r * kTextLen + i)];
      id = i < length - 1 ? 1 + (r * 7 + i * 13) % (config.text.vocab_size - 2) : config.text.vocab_size - 1;
      if (i >= length) mask[size_t(r * kTextLen + i)] = 0;
    }
  }
  b.ids = from_vector<int64_t>(ids, {texts, kTextLen});
  b.mask = from_vector<int64_t>(mask, {texts, kTextLen});
  std::vector<double> gold(static_cast<size_t>(texts), 0.0);
  std::vector<int64_t> modality(static_cast<size_t>(texts), 0);
  for (int64_t i = 0; i < texts; ++i) {
    gold[size_t(i)] = 1.0 + double((i * 5) % 9) / 2.0;
    modality[size_t(i)] = i % 3;
  }
  b.gold = from_vector<double>(gold, {kLists, kListSize}, DType::Float32);
  b.modality = from_vector<int64_t>(modality, {kLists, kListSize});
  return b;
}

// The tiny pair scorer, its optimizer and one fixed batch on `device`.
struct TinySetup {
  std::shared_ptr<vlm::PairScorer> model;
  std::unique_ptr<nn::AdamW> optimizer;
  Batch batch;

  explicit TinySetup(Device device, bool capturable = false) {
    const vlm::CLIPConfig config = vlm::tiny_clip_config();
    vlm::PairHeadConfig head;
    head.hidden_size = config.projection_dim;
    head.dropout = 0.0;
    model = std::make_shared<vlm::PairScorer>(config, head, /*seed=*/5);
    model->to(device);
    model->train();
    nn::AdamWOptions options;
    options.lr = 1e-3;
    options.capturable = capturable;
    optimizer = std::make_unique<nn::AdamW>(nn::decay_param_groups(*model, 0.01), options);
    batch = make_batch(config, device);
  }

  // The combined objective of the batch, values not read.
  losses::ObjectiveResult objective(uint64_t tie_seed) const {
    auto out = model->forward(batch.pixels, batch.ids, batch.mask, kListSize);
    losses::ObjectiveInputs in;
    in.scores = reshape(out.score, {kLists, kListSize});
    in.gold = batch.gold;
    in.modality_logits = reshape(out.modality_logits, {kLists, kListSize, 3});
    in.modality_targets = batch.modality;
    in.tie_seed = tie_seed;
    return losses::compute_objective({}, in, losses::HostReads::Deferred);
  }

  // One AdamW step; returns the objective (unread).
  losses::ObjectiveResult step(uint64_t tie_seed) {
    losses::ObjectiveResult result = objective(tie_seed);
    optimizer->zero_grad();
    result.total.backward();
    optimizer->step();
    return result;
  }
};

struct Trained {
  std::vector<double> losses;
  int64_t waits_in_steps = 0;
};

// `steps` AdamW steps of the combined objective on `device`; the objective is read
// after each step's optimizer update, outside the counted region.
Trained train(Device device, int steps) {
  TinySetup setup(device);
  Trained result;
  for (int s = 0; s < steps; ++s) {
    device_synchronize(device);
    const int64_t before = device_sync_count();
    losses::ObjectiveResult objective = setup.step(static_cast<uint64_t>(s));
    result.waits_in_steps += device_sync_count() - before;
    objective.read_values();
    result.losses.push_back(objective.total_value);
  }
  return result;
}

bool debug_sync_requested() {
  const char* value = std::getenv("MMS_CUDA_DEBUG_SYNC");
  return value != nullptr && value[0] != '\0' && value[0] != '0';
}

}  // namespace

TEST_CASE("step on the CPU: the deferred objective gives real, decreasing losses") {
  const Trained cpu = train(Device::cpu(), 4);
  REQUIRE(cpu.losses.size() == 4);
  for (double loss : cpu.losses) CHECK(std::isfinite(loss));
  CHECK(cpu.losses.front() > 0.5);
  CHECK(cpu.losses.back() < cpu.losses.front());  // lr 1e-3 on one batch: it learns
  CHECK(cpu.waits_in_steps == 0);
}

TEST_CASE("cuda: a whole step matches the CPU and never makes the host wait") {
  SKIP_WITHOUT_GPU();
  const Trained cpu = train(Device::cpu(), 4);
  const Trained gpu = train(Device::cuda(0), 4);
  REQUIRE(gpu.losses.size() == cpu.losses.size());
  // Step 1 sees identical weights: float32 tolerance. Later steps follow AdamW, whose
  // first updates are ~lr * sign(grad), so small gradient differences stay small.
  CHECK(std::abs(gpu.losses[0] - cpu.losses[0]) <= 1e-4 * std::abs(cpu.losses[0]));
  for (size_t i = 1; i < cpu.losses.size(); ++i)
    CHECK(std::abs(gpu.losses[i] - cpu.losses[i]) <= 1e-3 * std::abs(cpu.losses[i]));
  // With MMS_CUDA_DEBUG_SYNC=1 every launch syncs on purpose; otherwise none may.
  if (!debug_sync_requested()) CHECK(gpu.waits_in_steps == 0);
}

#ifdef MMS_WITH_CUDA
TEST_CASE("cuda: a captured graph replays the forward exactly, and replayed steps train like eager steps") {
  SKIP_WITHOUT_GPU();
  const Device gpu = Device::cuda(0);
  TinySetup setup(gpu, /*capturable=*/true);
  setup.step(0).read_values();  // eager warm-up: optimizer state, device step count, cuBLAS workspace

  // Forward + objective only: a replay computes exactly what the eager call computed.
  setup.optimizer->zero_grad();
  losses::ObjectiveResult eager = setup.objective(1);
  eager.read_values();
  Tensor forward_loss = zeros({}, DType::Float32, gpu);
  {
    cuda::CapturedGraph forward;
    forward.capture([&] {
      NoGradGuard no_grad;
      ops::copy_(forward_loss, setup.objective(1).total);
    });
    CHECK(forward.node_count() > 20);
    ops::fill_(forward_loss, 0.0);
    forward.replay();
    CHECK(forward_loss.item() == doctest::Approx(eager.total_value).epsilon(1e-6));
  }

  // The whole step, captured once and replayed 4 times, against 4 more eager steps of an
  // identical setup: the same losses (AdamW's count advances on the device), and no
  // replay makes the host wait.
  TinySetup reference(gpu, /*capturable=*/true);
  reference.step(0).read_values();
  std::vector<double> eager_losses;
  for (int i = 0; i < 4; ++i) {
    losses::ObjectiveResult r = reference.step(2);
    r.read_values();
    eager_losses.push_back(r.total_value);
  }
  Tensor step_loss = zeros({}, DType::Float32, gpu);
  cuda::CapturedGraph step;
  step.capture([&] {
    losses::ObjectiveResult result = setup.step(2);
    ops::copy_(step_loss, result.total.detach());
    setup.optimizer->zero_grad();
  });
  std::vector<double> replayed;
  for (int i = 0; i < 4; ++i) {
    const int64_t before = device_sync_count();
    step.replay();
    CHECK(device_sync_count() == before);
    replayed.push_back(step_loss.item());
  }
  for (size_t i = 0; i < replayed.size(); ++i)
    CHECK(replayed[i] == doctest::Approx(eager_losses[i]).epsilon(1e-5));
  CHECK(replayed.back() < replayed.front());
  CHECK(setup.optimizer->state("head.score.weight").step == 5);  // 1 eager + 4 replays, read from the device
}
#endif

TEST_CASE("cuda: clip_grad_norm_ and its deferred form match the CPU") {
  SKIP_WITHOUT_GPU();
  // Two gradients with a global norm of 13 (3-4-12): clipped to 6.5, left alone at 20,
  // and +inf (the trainer's "norm only") reads the norm without touching them.
  for (double max_norm : {6.5, 20.0, std::numeric_limits<double>::infinity()}) {
    INFO("max_norm " << max_norm);
    double norms[2];
    std::vector<float> grads[2];
    for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
      const Device device = on_gpu ? Device::cuda(0) : Device::cpu();
      Tensor a = zeros({2}, DType::Float32, device).set_requires_grad(true);
      Tensor b = zeros({1}, DType::Float32, device).set_requires_grad(true);
      a.set_grad(from_vector<float>({3, 4}, {2}).to(device));
      b.set_grad(from_vector<float>({12}, {1}).to(device));
      norms[on_gpu] = nn::clip_grad_norm_({a, b}, max_norm);
      grads[on_gpu] = a.grad().to(Device::cpu()).to_vector<float>();
      const std::vector<float> gb = b.grad().to(Device::cpu()).to_vector<float>();
      grads[on_gpu].insert(grads[on_gpu].end(), gb.begin(), gb.end());
    }
    CHECK(norms[0] == doctest::Approx(13.0).epsilon(1e-12));
    CHECK(norms[1] == doctest::Approx(13.0).epsilon(1e-6));
    const double scale = max_norm < 13.0 ? max_norm / (13.0 + 1e-6) : 1.0;
    for (int d = 0; d < 2; ++d) {
      REQUIRE(grads[d].size() == 3);
      CHECK(grads[d][0] == doctest::Approx(3 * scale).epsilon(1e-6));
      CHECK(grads[d][2] == doctest::Approx(12 * scale).epsilon(1e-6));
    }
  }
}

namespace {
double sum_ms(const std::vector<ProfileRow>& rows) {
  double total = 0.0;
  for (const ProfileRow& r : rows) total += r.ms;
  return total;
}
const ProfileRow* find_row(const std::vector<ProfileRow>& rows, const std::string& label) {
  for (const ProfileRow& r : rows)
    if (r.label == label) return &r;
  return nullptr;
}
}  // namespace

TEST_CASE("profile: the report's tables") {
  ProfileReport report;
  report.total_ms = 4.0;
  report.ops = {{"linear", 3, 3.0}, {"layer_norm backward", 1, 0.75}, {"adamw", 1, 0.25}};
  report.kernels = {{"gemm_f32:103", 3, 3.0}, {"layer_norm_backward:88", 1, 1.0}};
  const std::string text = format_profile(report, 2);
  CHECK(text.find("GPU time profiled: 4.000 ms") != std::string::npos);
  CHECK(text.find("linear") != std::string::npos);
  CHECK(text.find("75.0%") != std::string::npos);         // linear's share
  CHECK(text.find("(1 more)") != std::string::npos);       // adamw folded into the rest
  CHECK(text.find("adamw") == std::string::npos);
  CHECK(text.find("gemm_f32:103") != std::string::npos);
  // A CPU report has no kernel table and says whose clock it read.
  report.kernels.clear();
  report.host_clock = true;
  const std::string cpu_text = format_profile(report, 5);
  CHECK(cpu_text.find("CPU wall time profiled: 4.000 ms") != std::string::npos);
  CHECK(cpu_text.find("kernel launch site") == std::string::npos);
}

TEST_CASE("profile: a CPU step's wall time is charged to its ops, one profile at a time") {
  const Device cpu = Device::cpu();
  TinySetup setup(cpu);
  setup.step(0).read_values();
  profile_begin(cpu);
  CHECK_THROWS_WITH_AS(profile_begin(cpu), doctest::Contains("already open"), Error);
  setup.step(1);
  const ProfileReport report = profile_end();
  CHECK_THROWS_AS(profile_end(), Error);
  CHECK(report.host_clock);
  CHECK(report.kernels.empty());
  CHECK(report.total_ms > 0.0);
  CHECK(sum_ms(report.ops) == doctest::Approx(report.total_ms).epsilon(1e-9));
  for (size_t i = 1; i < report.ops.size(); ++i) CHECK(report.ops[i - 1].ms >= report.ops[i].ms);
  for (const char* op : {"adamw", "layer_norm", "layer_norm backward", "linear", "linear backward"}) {
    INFO("op row: " << op);
    const ProfileRow* row = find_row(report.ops, op);
    REQUIRE(row != nullptr);
    CHECK(row->calls >= 1);
  }
  CHECK(find_row(report.ops, "adamw")->calls == 1);
  // Closed: marks after the end record nothing, and a scope left by an exception
  // discards its recording so the next profile opens.
  setup.step(2).read_values();
  CHECK_THROWS_AS(([&] {
                    ProfileScope scope(cpu);
                    fail("the profiled work failed");
                  }()),
                  Error);
  ProfileScope again(cpu);
  const ProfileReport empty_report = again.end();
  CHECK(empty_report.ops.empty());
  CHECK(empty_report.total_ms == 0.0);
}

TEST_CASE("cuda: the profile of a whole step charges all its GPU time to ops and to kernels") {
  SKIP_WITHOUT_GPU();
  const Device gpu = Device::cuda(0);
  TinySetup setup(gpu);
  setup.step(0).read_values();  // warm: the profiled step allocates nothing new
  profile_begin(gpu);
  CHECK_THROWS_AS(profile_begin(gpu), Error);  // one at a time
  setup.step(1);
  const ProfileReport report = profile_end();
  CHECK_THROWS_AS(profile_end(), Error);
  CHECK(report.total_ms > 0.0);
  // Every interval lands in exactly one row of each table.
  CHECK(sum_ms(report.ops) == doctest::Approx(report.total_ms).epsilon(1e-6));
  CHECK(sum_ms(report.kernels) == doctest::Approx(report.total_ms).epsilon(1e-6));
  for (const char* op : {"adamw", "layer_norm", "layer_norm backward"}) {
    INFO("op row: " << op);
    const ProfileRow* row = find_row(report.ops, op);
    REQUIRE(row != nullptr);
    CHECK(row->calls >= 1);
  }
  CHECK(find_row(report.ops, "adamw")->calls == 1);
  bool kernel_site = false;  // launch sites read "function:line"
  for (const ProfileRow& r : report.kernels) kernel_site = kernel_site || r.label.find(':') != std::string::npos;
  CHECK(kernel_site);
  // Closed: marks after the end record nothing, and a new profile starts clean.
  setup.step(2).read_values();
  profile_begin(gpu);
  const ProfileReport empty_report = profile_end();
  CHECK(empty_report.ops.empty());
  CHECK(empty_report.total_ms == 0.0);
  // A scope left by an exception discards its recording: the next one opens.
  CHECK_THROWS_AS(([&] {
                    ProfileScope scope(gpu);
                    fail("the profiled work failed");
                  }()),
                  Error);
  ProfileScope again(gpu);
  CHECK(again.end().total_ms >= 0.0);
}
