// A synthetic stand-in for MM-SCALE, written in the exact release layout, so the
// default fine-tune runs with no download. Deterministic per seed (own RNG: no
// std:: distributions, whose output differs between standard libraries).
//
// Each image is a small scene: a place (background colour), a person (head + body)
// and one object. The object's kind (and so its colour) carries the moral signal
// (gift, flower, book help; knife, fire, trash harm) and its position scales it (an
// object next to the person matters twice as much as one in the far corner):
//     image_valence = kind_valence * (near ? 1 : 0.5)          in [-2, 2]
// Each scenario's text is a template; its modality label says which source decides
// the true rating:
//   text:  an action with its own valence ("steals a wallet from"), object not shown
//          matter:                     rating = 3 + action_valence
//   image: a neutral description ("stands in the park") - only the picture tells:
//                                      rating = 3 + image_valence
//   both:  "hands the thing in the picture to" (+1) / "takes ... away from" (-1):
//          the sign comes from the text, the size from the image:
//                                      rating = 3 + direction * image_valence
// Three simulated annotators add N(0, noise) and round to 1..5; mean_rating and
// rating_std (population) follow. Text-only or image-only models cannot recover the
// other modality's scenarios, so the task needs both.
#pragma once

#include <cstdint>
#include <string>

namespace mms::data {

struct SyntheticOptions {
  int64_t num_images = 600;
  uint64_t seed = 0;
  int64_t image_size = 64;       // square PNGs
  int64_t min_scenarios = 4;
  int64_t max_scenarios = 6;
  double annotator_noise = 0.5;  // std of each annotator's error before rounding
  double val_fraction = 0.1;
  double test_fraction = 0.1;
};

struct SyntheticSummary {
  int64_t images = 0;
  int64_t scenarios = 0;
  int64_t train_images = 0, val_images = 0, test_images = 0;
};

// Writes ROOT/images/*.png, ROOT/mmscale_clean_flat.jsonl, ROOT/mmscale_clean_contexts.jsonl
// and ROOT/splits/{train,val,test}.jsonl. Existing files are overwritten.
SyntheticSummary write_synthetic_dataset(const std::string& root, const SyntheticOptions& options = {});

}  // namespace mms::data
