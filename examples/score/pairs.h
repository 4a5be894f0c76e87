// The pairs file examples/score reads: JSON lines, one (image, scenario) per row,
//   {"image": "imgs/03485.png", "text": "Someone hands ...",
//    "scenario_id": "s17", "image_id": "03485.png", "gold_rating": 3.4, "modality": "text"}
// image and text are required (a relative image path is taken from the file's own
// folder); scenario_id and image_id may be strings or integers (defaults: the line
// number and the image's file name); gold_rating a number in [1, 5] or null; modality
// text | image | both, or absent/null. Blank lines are skipped. Anything wrong is an
// mms::Error naming FILE:LINE and the field: a text of only (Unicode) spaces, a repeated
// scenario_id, a missing image file.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace mmscore {

struct PairRow {
  std::string image_path;  // resolved
  std::string text;
  std::string scenario_id, image_id;
  std::optional<double> gold_rating;
  std::string modality;  // "" = unknown
};

std::vector<PairRow> read_pairs_file(const std::string& path);

}  // namespace mmscore
