#include "data/synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "data/image.h"
#include "data/rng.h"
#include "tensor/error.h"

namespace mms::data {

namespace fs = std::filesystem;

namespace {

// The synthetic generator's stream; pick() is the only extra it needs.
class Rng : public SplitMix64 {
 public:
  using SplitMix64::SplitMix64;
  template <typename T, size_t N>
  const T& pick(const std::array<T, N>& items) { return items[static_cast<size_t>(below(N))]; }
};

using Rgb = std::array<int, 3>;

struct Place {
  const char* phrase;
  const char* setting;
  Rgb background;
};
constexpr std::array<Place, 5> kPlaces{{{"in the park", "park", {90, 150, 80}},
                                        {"on the street", "street", {120, 120, 128}},
                                        {"in the kitchen", "kitchen", {214, 192, 150}},
                                        {"at school", "school", {165, 178, 212}},
                                        {"in a shop", "shop", {200, 160, 190}}}};

enum class Shape { Box, Circle, Bar, NarrowTriangle, WideTriangle };
struct ObjectKind {
  const char* name;
  double valence;
  Rgb color;
  Shape shape;
};
constexpr std::array<ObjectKind, 6> kObjects{{{"gift", 2.0, {40, 90, 230}, Shape::Box},
                                              {"flower", 1.0, {250, 220, 40}, Shape::Circle},
                                              {"book", 1.0, {255, 255, 255}, Shape::Bar},
                                              {"knife", -2.0, {230, 30, 30}, Shape::NarrowTriangle},
                                              {"fire", -2.0, {255, 130, 0}, Shape::WideTriangle},
                                              {"trash", -1.0, {35, 35, 35}, Shape::Circle}}};

constexpr std::array<const char*, 6> kSubjects{"a man", "a woman", "a teenager", "an old man", "a girl", "a boy"};
constexpr std::array<const char*, 6> kOthers{"a child", "an old woman", "a neighbour", "a stranger", "a classmate",
                                             "a tourist"};
struct Action {
  const char* phrase;  // {o} is the other person
  double valence;
};
constexpr std::array<Action, 10> kTextActions{{{"helps {o} carry heavy bags", 2.0},
                                               {"comforts {o} who is crying", 2.0},
                                               {"shares lunch with {o}", 1.0},
                                               {"holds the door for {o}", 1.0},
                                               {"waves at {o}", 0.5},
                                               {"ignores {o} asking for directions", -1.0},
                                               {"laughs at {o}", -1.0},
                                               {"insults {o}", -1.5},
                                               {"steals a wallet from {o}", -2.0},
                                               {"pushes {o} to the ground", -2.0}}};
constexpr std::array<const char*, 4> kNeutral{"{s} stands {p}", "{s} is seen {p}", "a scene {p} with {s}",
                                              "{s} waits {p}"};
struct Direction {
  const char* phrase;
  double sign;
};
constexpr std::array<Direction, 4> kBoth{{{"{s} hands the thing in the picture to {o}", 1.0},
                                          {"{s} offers the object shown here to {o}", 1.0},
                                          {"{s} takes the thing in the picture away from {o}", -1.0},
                                          {"{s} keeps the object shown here from {o}", -1.0}}};

std::string fill(std::string text, const std::string& s, const std::string& o, const std::string& p) {
  for (auto [key, value] : {std::pair{"{s}", &s}, {"{o}", &o}, {"{p}", &p}}) {
    for (size_t at; (at = text.find(key)) != std::string::npos;) text.replace(at, 3, *value);
  }
  text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
  return text;
}

// ---- drawing --------------------------------------------------------------------------

struct Canvas {
  ImageU8 image;
  explicit Canvas(int64_t size, Rgb bg) {
    image.width = image.height = size;
    image.channels = 3;
    image.pixels.resize(static_cast<size_t>(size * size * 3));
    for (int64_t i = 0; i < size * size; ++i)
      for (int c = 0; c < 3; ++c) image.pixels[i * 3 + c] = static_cast<uint8_t>(bg[c]);
  }
  void set(int64_t x, int64_t y, Rgb color) {
    if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
    for (int c = 0; c < 3; ++c) image.pixels[(y * image.width + x) * 3 + c] = static_cast<uint8_t>(color[c]);
  }
  void rect(double x0, double y0, double x1, double y1, Rgb color) {
    for (int64_t y = static_cast<int64_t>(std::floor(y0)); y < static_cast<int64_t>(std::ceil(y1)); ++y)
      for (int64_t x = static_cast<int64_t>(std::floor(x0)); x < static_cast<int64_t>(std::ceil(x1)); ++x)
        set(x, y, color);
  }
  void circle(double cx, double cy, double r, Rgb color) {
    for (int64_t y = static_cast<int64_t>(cy - r - 1); y <= static_cast<int64_t>(cy + r + 1); ++y)
      for (int64_t x = static_cast<int64_t>(cx - r - 1); x <= static_cast<int64_t>(cx + r + 1); ++x)
        if ((x + 0.5 - cx) * (x + 0.5 - cx) + (y + 0.5 - cy) * (y + 0.5 - cy) <= r * r) set(x, y, color);
  }
  // Upward triangle: apex at (cx, top), base from cx - half to cx + half at bottom.
  void triangle(double cx, double top, double bottom, double half, Rgb color) {
    for (int64_t y = static_cast<int64_t>(top); y < static_cast<int64_t>(std::ceil(bottom)); ++y) {
      double t = (y + 0.5 - top) / (bottom - top);
      rect(cx - half * t, y, cx + half * t, y + 1, color);
    }
  }
  void noise(Rng& rng, int amplitude) {
    for (auto& p : image.pixels) {
      int v = p + static_cast<int>(rng.below(2 * amplitude + 1)) - amplitude;
      p = static_cast<uint8_t>(std::clamp(v, 0, 255));
    }
  }
};

void draw_object(Canvas& canvas, const ObjectKind& kind, double cx, double cy, double size) {
  const double h = size / 2;
  switch (kind.shape) {
    case Shape::Box:
      canvas.rect(cx - h, cy - h, cx + h, cy + h, kind.color);
      canvas.rect(cx - h, cy - size / 12, cx + h, cy + size / 12, {250, 250, 250});  // ribbon
      break;
    case Shape::Circle: canvas.circle(cx, cy, h, kind.color); break;
    case Shape::Bar: canvas.rect(cx - h, cy - h / 2, cx + h, cy + h / 2, kind.color); break;
    case Shape::NarrowTriangle: canvas.triangle(cx, cy - h * 1.4, cy + h * 1.2, h / 3, kind.color); break;
    case Shape::WideTriangle: canvas.triangle(cx, cy - h, cy + h, h, kind.color); break;
  }
}

struct Scene {
  const Place* place;
  const ObjectKind* object;
  bool near;
  double valence() const { return object->valence * (near ? 1.0 : 0.5); }
};

ImageU8 render(const Scene& scene, int64_t size, Rng& rng) {
  const double s = static_cast<double>(size);
  Canvas canvas(size, scene.place->background);
  canvas.rect(0, s * 0.82, s, s, {scene.place->background[0] / 2, scene.place->background[1] / 2,
                                   scene.place->background[2] / 2});  // ground
  const bool person_left = rng.below(2) == 0;
  const double jitter = s / 24;
  const double px = s * (person_left ? 0.3 : 0.7) + (rng.uniform() - 0.5) * jitter;
  static constexpr std::array<Rgb, 4> kClothes{{{60, 60, 160}, {150, 40, 120}, {40, 120, 120}, {100, 80, 60}}};
  const Rgb clothes = kClothes[static_cast<size_t>(rng.below(4))];
  canvas.rect(px - s / 16, s * 0.52, px + s / 16, s * 0.82, clothes);  // body
  canvas.circle(px, s * 0.45, s / 14, {235, 200, 170});                 // head
  const double object_size = s * 0.2;
  double ox, oy;
  if (scene.near) {
    ox = px + (person_left ? 1 : -1) * s * 0.16;
    oy = s * 0.64;
  } else {
    ox = person_left ? s * 0.85 : s * 0.15;
    oy = s * 0.15;
  }
  ox += (rng.uniform() - 0.5) * jitter;
  oy += (rng.uniform() - 0.5) * jitter;
  draw_object(canvas, *scene.object, ox, oy, object_size);
  canvas.noise(rng, 6);
  return std::move(canvas.image);
}

struct Annotated {
  std::vector<int> ratings;
  double mean = 0, stddev = 0;
};

Annotated annotate(double true_rating, double noise, Rng& rng) {
  Annotated a;
  for (int k = 0; k < 3; ++k) {
    double r = std::round(true_rating + noise * rng.normal());
    a.ratings.push_back(static_cast<int>(std::clamp(r, 1.0, 5.0)));
  }
  for (int r : a.ratings) a.mean += r;
  a.mean /= 3.0;
  for (int r : a.ratings) a.stddev += (r - a.mean) * (r - a.mean);
  a.stddev = std::sqrt(a.stddev / 3.0);
  // Rounded like a release file; the loader must not depend on exact binary values.
  a.mean = std::round(a.mean * 1e4) / 1e4;
  a.stddev = std::round(a.stddev * 1e4) / 1e4;
  return a;
}

void write_text(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) fail("make_synthetic: cannot write ", tmp.string());
    out << text;
    if (!out.flush()) fail("make_synthetic: write failed for ", tmp.string());
  }
  fs::rename(tmp, path);
}

}  // namespace

SyntheticSummary write_synthetic_dataset(const std::string& root, const SyntheticOptions& o) {
  MMS_CHECK(o.num_images >= 3, "make_synthetic: need at least 3 images, got ", o.num_images);
  MMS_CHECK(o.image_size >= 16 && o.image_size <= 1024, "make_synthetic: image size ", o.image_size,
            " outside 16..1024");
  MMS_CHECK(o.min_scenarios >= 2 && o.max_scenarios >= o.min_scenarios && o.max_scenarios <= 99,
            "make_synthetic: scenarios per image must satisfy 2 <= min <= max <= 99");
  MMS_CHECK(o.val_fraction >= 0 && o.test_fraction >= 0 && o.val_fraction + o.test_fraction < 1,
            "make_synthetic: val + test fractions must be in [0, 1)");
  fs::create_directories(fs::path(root) / "images");
  fs::create_directories(fs::path(root) / "splits");

  Rng rng(o.seed);
  SyntheticSummary summary;
  std::string flat;
  std::vector<std::string> context_rows;
  for (int64_t i = 0; i < o.num_images; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%05lld.png", static_cast<long long>(i));
    const std::string image_id = name;
    Scene scene{&rng.pick(kPlaces), &rng.pick(kObjects), rng.below(2) == 0};
    write_png((fs::path(root) / "images" / image_id).string(), render(scene, o.image_size, rng));

    nlohmann::ordered_json context;
    context["image_id"] = image_id;
    context["target_setting"] = scene.place->setting;
    context["scenarios"] = nlohmann::ordered_json::array();
    const int64_t count = o.min_scenarios + rng.below(o.max_scenarios - o.min_scenarios + 1);
    std::set<std::string> texts;
    for (int64_t k = 0; k < count; ++k) {
      // Rotate modalities so each image mixes sources; the start is random.
      const auto modality = static_cast<int>((k + rng.below(3)) % 3);
      std::string text;
      double rating = 3.0;
      std::vector<std::string> slots;
      for (int attempt = 0; attempt < 20; ++attempt) {
        const std::string subject = rng.pick(kSubjects), other = rng.pick(kOthers);
        if (modality == 0) {
          const Action& a = rng.pick(kTextActions);
          text = fill(std::string("{s} ") + a.phrase + " {p}", subject, other, scene.place->phrase);
          rating = 3.0 + a.valence;
          slots = {"action"};
        } else if (modality == 1) {
          text = fill(rng.pick(kNeutral), subject, other, scene.place->phrase);
          rating = 3.0 + scene.valence();
          slots = {"object"};
        } else {
          const Direction& d = rng.pick(kBoth);
          text = fill(d.phrase, subject, other, scene.place->phrase);
          rating = 3.0 + d.sign * scene.valence();
          slots = {"action", "object"};
        }
        if (texts.insert(text).second) break;
      }
      const Annotated a = annotate(rating, o.annotator_noise, rng);
      static constexpr const char* kNames[3] = {"text", "image", "both"};
      nlohmann::ordered_json votes = {{"text", 0}, {"image", 0}, {"both", 0}};
      for (int v = 0; v < 3; ++v) {
        // Two annotators always agree with the source that decides; the third may not.
        const int vote = v < 2 || rng.uniform() < 0.7 ? modality : static_cast<int>(rng.below(3));
        votes[kNames[vote]] = votes[kNames[vote]].get<int>() + 1;
      }
      char sid[32];
      std::snprintf(sid, sizeof sid, "_s%02lld", static_cast<long long>(k + 1));
      nlohmann::ordered_json row;
      row["image_id"] = image_id;
      row["target_setting"] = scene.place->setting;
      row["scenario_id"] = image_id + sid;
      row["text"] = text;
      row["mean_rating"] = a.mean;
      row["ratings"] = a.ratings;
      row["rating_std"] = a.stddev;
      row["modality"] = kNames[modality];
      row["modality_votes"] = votes;
      row["source_slots"] = slots;
      row["dedupe_group_size"] = 1;
      flat += row.dump() + "\n";
      nlohmann::ordered_json nested = row;
      nested.erase("image_id");
      nested.erase("target_setting");
      context["scenarios"].push_back(nested);
      ++summary.scenarios;
    }
    context_rows.push_back(context.dump() + "\n");
    ++summary.images;
  }

  // Image-disjoint splits from a seeded shuffle (Fisher-Yates on our own RNG).
  std::vector<size_t> order(context_rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  Rng split_rng(o.seed ^ 0x5EEDu);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(split_rng.below(static_cast<int64_t>(i)))]);
  const auto n = static_cast<int64_t>(order.size());
  summary.test_images = std::max<int64_t>(1, static_cast<int64_t>(std::llround(n * o.test_fraction)));
  summary.val_images = std::max<int64_t>(1, static_cast<int64_t>(std::llround(n * o.val_fraction)));
  summary.train_images = n - summary.val_images - summary.test_images;
  MMS_CHECK(summary.train_images >= 1, "make_synthetic: too few images for three splits");
  std::array<std::string, 3> split_text;
  for (int64_t r = 0; r < n; ++r) {
    const int which = r < summary.train_images ? 0 : (r < summary.train_images + summary.val_images ? 1 : 2);
    split_text[which] += context_rows[order[r]];
  }
  // Keep each split file in image order, so diffs of two runs read naturally.
  for (auto& text : split_text) {
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t at; (at = text.find('\n', start)) != std::string::npos; start = at + 1)
      lines.push_back(text.substr(start, at + 1 - start));
    std::sort(lines.begin(), lines.end());
    text.clear();
    for (auto& l : lines) text += l;
  }
  std::string contexts;
  for (const auto& row : context_rows) contexts += row;
  write_text(fs::path(root) / "mmscale_clean_flat.jsonl", flat);
  write_text(fs::path(root) / "mmscale_clean_contexts.jsonl", contexts);
  write_text(fs::path(root) / "splits" / "train.jsonl", split_text[0]);
  write_text(fs::path(root) / "splits" / "val.jsonl", split_text[1]);
  write_text(fs::path(root) / "splits" / "test.jsonl", split_text[2]);
  return summary;
}

}  // namespace mms::data
