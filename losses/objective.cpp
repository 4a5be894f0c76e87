#include "losses/objective.h"

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
// total += weight * term (differentiable), and remember the term's value.
void accumulate(Tensor& total, std::optional<double>& slot, double weight, const Tensor& term) {
  slot = term.item();
  Tensor weighted = mul(term, weight);
  total = total.defined() ? add(total, weighted) : weighted;
}
}  // namespace

ObjectiveResult compute_objective(const ObjectiveWeights& w, const ObjectiveInputs& in) {
  MMS_CHECK(in.scores.defined() && in.gold.defined(), "objective: scores and gold are required");
  ObjectiveResult result;
  Tensor total;
  if (w.listmle != 0.0)
    accumulate(total, result.listmle, w.listmle, listmle_loss(in.scores, in.gold, in.valid, in.tie_seed));
  if (w.mse != 0.0) accumulate(total, result.mse, w.mse, mse_loss(in.scores, in.gold, in.valid));
  if (w.modality != 0.0) {
    MMS_CHECK(in.modality_logits.defined() && in.modality_targets.defined(),
              "objective: the modality weight is ", w.modality, " but no modality logits/targets were given");
    accumulate(total, result.modality, w.modality, cross_entropy_loss(in.modality_logits, in.modality_targets));
  }
  if (w.bce != 0.0) {
    const Tensor& logits = in.bce_logits.defined() ? in.bce_logits : in.scores;
    Tensor labels = acceptability_targets(in.gold.to(logits.dtype()).to(logits.device()));
    accumulate(total, result.bce, w.bce, bce_with_logits_loss(logits, labels, in.valid));
  }
  if (w.pairwise != 0.0)
    accumulate(total, result.pairwise, w.pairwise, pairwise_logistic_loss(in.scores, in.gold, in.valid));
  MMS_CHECK(total.defined(), "objective: every weight is 0, there is nothing to optimise");
  result.total = total;
  result.total_value = total.item();
  return result;
}

}  // namespace mms::losses
