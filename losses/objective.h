// The MM-SCALE training objective: a weighted sum of the losses in losses/, with each
// term's value kept for logging.
//
//   total = w_listmle * ListMLE(scores, gold)      listwise (the paper's method)
//         + w_mse     * MSE(scores, gold)          regression on the 1-5 score
//         + w_modality * CE(modality_logits, modality_targets)
//         + w_bce     * BCE(bce_logits, gold >= 2.5)   binary baseline
//         + w_pairwise * PairwiseLogistic(scores, gold) pairwise baseline
// A term whose weight is 0 is not computed (and not reported). The presets name the
// configurations the paper compares: the combined objective, and each baseline alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/api.h"
#include "losses/loss_utils.h"

namespace mms::losses {

struct ObjectiveWeights {
  double listmle = 1.0;
  double mse = 0.5;
  double modality = 0.1;
  double bce = 0.0;
  double pairwise = 0.0;

  // ListMLE + MSE + modality CE (defaults 1, 0.5, 0.1 as in bench/torch_step.py).
  static ObjectiveWeights combined(double w_listmle = 1.0, double w_mse = 0.5, double w_modality = 0.1);
  static ObjectiveWeights listmle_only();
  static ObjectiveWeights mse_only();
  static ObjectiveWeights bce_only();
  static ObjectiveWeights pairwise_only();
  // "combined", "listmle", "mse", "bce" or "pairwise"; anything else is an mms::Error.
  static ObjectiveWeights preset(const std::string& name);
};

struct ObjectiveInputs {
  Tensor scores;            // [B, K] predicted scores (differentiable)
  Tensor gold;              // [B, K] mean gold ratings (1-5)
  Tensor valid;             // [B, K] Bool/UInt8, or undefined = all valid
  Tensor modality_logits;   // [B, K, 3]; needed when the modality weight is nonzero
  Tensor modality_targets;  // [B, K] Int64, kIgnoreIndex (-100) where unknown or padded
  Tensor bce_logits;        // [B, K]; the BCE term uses scores when undefined
  uint64_t tie_seed = 0;    // ListMLE tie shuffle (losses/listmle.h)
};

// When compute_objective reads the loss values back to the host.
//   Now:      before it returns (each term's value is filled in; non-finite inputs throw
//             from inside the loss that saw them). One wait for the device per read.
//   Deferred: never; the caller calls ObjectiveResult::read_values() when it wants the
//             numbers (or not at all). No wait for the device happens in between, so a
//             training step on the GPU can be queued end to end while the GPU runs; the
//             finiteness checks of the inputs are computed on the device and read with
//             the values, and raise the same errors then. Labels (gold, valid, modality
//             targets) are still read on the host: pass them as CPU tensors so that read
//             is free.
enum class HostReads { Now, Deferred };

struct ObjectiveResult {
  Tensor total;  // scalar, differentiable
  // Values of the computed terms (unweighted), for logging; nullopt = not computed.
  // With HostReads::Deferred they are filled in by read_values().
  std::optional<double> listmle, mse, modality, bce, pairwise;
  double total_value = 0.0;
  // {"loss": total, "listmle": ..., ...} with only the computed terms.
  nlohmann::json to_json() const;

  // One device -> host copy of every term, the total and the queued finiteness probes;
  // throws the error the first failing check would have thrown. Idempotent.
  void read_values();
  bool values_read() const { return pending_.empty() && terms_.empty(); }

 private:
  friend ObjectiveResult compute_objective(const ObjectiveWeights&, const ObjectiveInputs&, HostReads);
  std::vector<std::pair<std::optional<double> ObjectiveResult::*, Tensor>> terms_;  // not yet read
  std::vector<PendingFiniteCheck> pending_;
};

ObjectiveResult compute_objective(const ObjectiveWeights& weights, const ObjectiveInputs& inputs,
                                  HostReads reads = HostReads::Now);

}  // namespace mms::losses
