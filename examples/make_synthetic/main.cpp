// make_synthetic: writes the synthetic MM-SCALE stand-in in the release layout.
//
//   make_synthetic --out ROOT [--images 600] [--seed 0] [--image-size 64]
//                  [--min-scenarios 4] [--max-scenarios 6] [--noise 0.5]
//
// The same seed always gives byte-identical files. See data/synthetic.h for how the
// scenes and texts carry the rating signal.
#include <CLI/CLI.hpp>
#include <iostream>

#include "data/mmscale_dataset.h"
#include "data/synthetic.h"

int main(int argc, char** argv) {
  CLI::App app{"Write the synthetic MM-SCALE stand-in (images/, *.jsonl, splits/)"};
  std::string out;
  mms::data::SyntheticOptions o;
  app.add_option("--out", out, "dataset root to write")->required();
  app.add_option("--images", o.num_images, "number of images")->check(CLI::Range(int64_t{3}, int64_t{10000000}));
  app.add_option("--seed", o.seed, "random seed");
  app.add_option("--image-size", o.image_size, "side of the square PNGs")->check(CLI::Range(16, 1024));
  app.add_option("--min-scenarios", o.min_scenarios, "fewest scenarios per image (>= 2)");
  app.add_option("--max-scenarios", o.max_scenarios, "most scenarios per image");
  app.add_option("--noise", o.annotator_noise, "annotator noise (std before rounding)");
  CLI11_PARSE(app, argc, argv);
  try {
    mms::data::SyntheticSummary s = mms::data::write_synthetic_dataset(out, o);
    // Read it back through the real loader, so a broken layout fails here, not later.
    mms::data::Dataset check = mms::data::load_mmscale_split(out, "train");
    std::cout << "make_synthetic: wrote " << s.images << " images, " << s.scenarios << " scenarios to " << out
              << " (splits train/val/test = " << s.train_images << "/" << s.val_images << "/" << s.test_images
              << " images; train reads back " << check.images.size() << " images)\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
