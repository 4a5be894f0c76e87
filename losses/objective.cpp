#include "losses/objective.h"

#include <cmath>

#include "losses/bce.h"
#include "losses/cross_entropy.h"
#include "losses/listmle.h"
#include "losses/mse.h"
#include "losses/pairwise.h"

namespace mms::losses {

ObjectiveWeights ObjectiveWeights::combined(double w_listmle, double w_mse, double w_modality) {
  return {w_listmle, w_mse, w_modality, 0.0, 0.0};
}
ObjectiveWeights ObjectiveWeights::listmle_only() { return {1.0, 0.0, 0.0, 0.0, 0.0}; }
ObjectiveWeights ObjectiveWeights::mse_only() { return {0.0, 1.0, 0.0, 0.0, 0.0}; }
ObjectiveWeights ObjectiveWeights::bce_only() { return {0.0, 0.0, 0.0, 1.0, 0.0}; }
ObjectiveWeights ObjectiveWeights::pairwise_only() { return {0.0, 0.0, 0.0, 0.0, 1.0}; }

ObjectiveWeights ObjectiveWeights::preset(const std::string& name) {
  if (name == "combined") return combined();
  if (name == "listmle") return listmle_only();
  if (name == "mse") return mse_only();
  if (name == "bce") return bce_only();
  if (name == "pairwise") return pairwise_only();
  fail("objective: unknown preset '", name, "' (expected combined, listmle, mse, bce or pairwise)");
}

nlohmann::json ObjectiveResult::to_json() const {
  nlohmann::json out;
  out["loss"] = total_value;
  if (listmle) out["listmle"] = *listmle;
  if (mse) out["mse"] = *mse;
  if (modality) out["modality"] = *modality;
  if (bce) out["bce"] = *bce;
  if (pairwise) out["pairwise"] = *pairwise;
  return out;
}

namespace {
using Slot = std::optional<double> ObjectiveResult::*;
}  // namespace

void ObjectiveResult::read_values() {
  if (values_read()) return;
  NoGradGuard no_grad;
  // Everything as float64 in one vector: [terms..., total, probes...], one copy.
  std::vector<Tensor> scalars;
  for (const auto& [slot, term] : terms_) scalars.push_back(ops::reshape(ops::cast(term, DType::Float64), {1}));
  scalars.push_back(ops::reshape(ops::cast(total, DType::Float64), {1}));
  for (const PendingFiniteCheck& check : pending_)
    scalars.push_back(ops::reshape(ops::cast(check.probe, DType::Float64).to(total.device()), {1}));
  const std::vector<double> values = ops::cat(scalars, 0).to_vector<double>();
  // Checks first, in the order they were queued: the error the immediate check would
  // have raised (from the first loss that saw a bad input) wins.
  for (size_t i = 0; i < pending_.size(); ++i)
    if (!std::isfinite(values[terms_.size() + 1 + i])) raise_non_finite(pending_[i]);
  for (size_t i = 0; i < terms_.size(); ++i) this->*(terms_[i].first) = values[i];
  total_value = values[terms_.size()];
  terms_.clear();
  pending_.clear();
}

ObjectiveResult compute_objective(const ObjectiveWeights& w, const ObjectiveInputs& in, HostReads reads) {
  MMS_CHECK(in.scores.defined() && in.gold.defined(), "objective: scores and gold are required");
  ObjectiveResult result;
  Tensor total;
  DeferFiniteChecks deferred;  // the losses' input checks are read with the values
  // total += weight * term (differentiable); the term's value is read later.
  auto accumulate = [&](Slot slot, double weight, const Tensor& term) {
    result.terms_.emplace_back(slot, term);
    Tensor weighted = mul(term, weight);
    total = total.defined() ? add(total, weighted) : weighted;
  };
  if (w.listmle != 0.0)
    accumulate(&ObjectiveResult::listmle, w.listmle, listmle_loss(in.scores, in.gold, in.valid, in.tie_seed));
  if (w.mse != 0.0) accumulate(&ObjectiveResult::mse, w.mse, mse_loss(in.scores, in.gold, in.valid));
  if (w.modality != 0.0) {
    MMS_CHECK(in.modality_logits.defined() && in.modality_targets.defined(),
              "objective: the modality weight is ", w.modality, " but no modality logits/targets were given");
    accumulate(&ObjectiveResult::modality, w.modality,
               cross_entropy_loss(in.modality_logits, in.modality_targets));
  }
  if (w.bce != 0.0) {
    const Tensor& logits = in.bce_logits.defined() ? in.bce_logits : in.scores;
    Tensor labels = acceptability_targets(in.gold.to(logits.dtype()).to(logits.device()));
    accumulate(&ObjectiveResult::bce, w.bce, bce_with_logits_loss(logits, labels, in.valid));
  }
  if (w.pairwise != 0.0)
    accumulate(&ObjectiveResult::pairwise, w.pairwise, pairwise_logistic_loss(in.scores, in.gold, in.valid));
  MMS_CHECK(total.defined(), "objective: every weight is 0, there is nothing to optimise");
  result.total = total;
  result.pending_ = deferred.take();
  if (reads == HostReads::Now) result.read_values();
  return result;
}

}  // namespace mms::losses
