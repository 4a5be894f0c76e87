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

#include <nlohmann/json.hpp>

#include "autograd/api.h"

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

struct ObjectiveResult {
  Tensor total;  // scalar, differentiable
  // Values of the computed terms (unweighted), for logging; nullopt = not computed.
  std::optional<double> listmle, mse, modality, bce, pairwise;
  double total_value = 0.0;
  // {"loss": total, "listmle": ..., ...} with only the computed terms.
  nlohmann::json to_json() const;
};

ObjectiveResult compute_objective(const ObjectiveWeights& weights, const ObjectiveInputs& inputs);

}  // namespace mms::losses
