#include "report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "tensor/error.h"

namespace mmsft {

namespace {
std::string cell(const std::optional<double>& v) {
  if (!v) return "";
  std::ostringstream os;
  os.precision(6);
  os << *v;
  return os.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  MMS_CHECK(out.good(), "cannot open ", path, " for writing");
  out << text;
  out.close();
  MMS_CHECK(out.good(), "failed writing ", path, " (disk full?)");
}

struct Series {
  std::string name, colour;
  std::vector<std::pair<double, double>> points;
};

// One panel: axes with min/max labels and a polyline per series.
void panel(std::ostringstream& svg, double x0, double y0, double w, double h, const std::string& title,
           const std::vector<Series>& series, double x_max) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      lo = std::min(lo, y);
      hi = std::max(hi, y);
    }
  if (!std::isfinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { hi = lo + 1; }
  const double pad = 40;
  svg << "<text x='" << x0 + w / 2 << "' y='" << y0 + 18 << "' text-anchor='middle' font-size='14'>" << title << "</text>\n";
  svg << "<rect x='" << x0 + pad << "' y='" << y0 + 28 << "' width='" << w - 2 * pad << "' height='" << h - 28 - pad
      << "' fill='none' stroke='#888'/>\n";
  svg << "<text x='" << x0 + pad - 4 << "' y='" << y0 + 36 << "' text-anchor='end' font-size='10'>" << cell(hi) << "</text>\n";
  svg << "<text x='" << x0 + pad - 4 << "' y='" << y0 + h - pad << "' text-anchor='end' font-size='10'>" << cell(lo) << "</text>\n";
  svg << "<text x='" << x0 + w - pad << "' y='" << y0 + h - pad + 14 << "' text-anchor='end' font-size='10'>step "
      << static_cast<int64_t>(x_max) << "</text>\n";
  int legend = 0;
  for (const auto& s : series) {
    svg << "<polyline fill='none' stroke='" << s.colour << "' stroke-width='1.5' points='";
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      const double px = x0 + pad + (x_max > 0 ? x / x_max : 0) * (w - 2 * pad);
      const double py = y0 + h - pad - (y - lo) / (hi - lo) * (h - 28 - pad);
      svg << px << "," << py << " ";
    }
    svg << "'/>\n";
    svg << "<text x='" << x0 + pad + 6 << "' y='" << y0 + h - 8 - 12 * legend << "' font-size='11' fill='" << s.colour << "'>"
        << s.name << "</text>\n";
    ++legend;
  }
}
}  // namespace

void write_train_log(const std::string& path, const std::vector<LogRow>& rows) {
  std::ostringstream csv;
  csv.precision(8);
  csv << "step,loss,loss_listmle,loss_mse,loss_modality,loss_bce,loss_pairwise,lr,grad_norm,pairs_per_s,"
         "val_ndcg@5,val_pairwise_acc_d0\n";
  for (const LogRow& r : rows)
    csv << r.step << ',' << r.loss << ',' << r.loss_listmle << ',' << r.loss_mse << ',' << r.loss_modality << ','
        << r.loss_bce << ',' << r.loss_pairwise << ',' << r.lr << ',' << r.grad_norm << ',' << r.pairs_per_second << ','
        << cell(r.val_ndcg5) << ',' << cell(r.val_pairwise_acc) << '\n';
  write_text_file(path, csv.str());
}

void write_curves_svg(const std::string& path, const std::vector<LogRow>& rows, const std::string& title) {
  Series loss{"training loss", "#c0392b", {}}, ndcg{"val NDCG@5", "#2471a3", {}}, acc{"val pairwise acc", "#229954", {}};
  double x_max = 0;
  for (const LogRow& r : rows) {
    x_max = std::max(x_max, static_cast<double>(r.step));
    loss.points.push_back({static_cast<double>(r.step), r.loss});
    if (r.val_ndcg5) ndcg.points.push_back({static_cast<double>(r.step), *r.val_ndcg5});
    if (r.val_pairwise_acc) acc.points.push_back({static_cast<double>(r.step), *r.val_pairwise_acc});
  }
  const double w = 480, h = 320;
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << 2 * w << "' height='" << h + 30
      << "' font-family='sans-serif'>\n<rect width='100%' height='100%' fill='white'/>\n";
  svg << "<text x='" << w << "' y='18' text-anchor='middle' font-size='15' font-weight='bold'>" << title << "</text>\n";
  panel(svg, 0, 30, w, h, "loss", {loss}, x_max);
  panel(svg, w, 30, w, h, "validation", {ndcg, acc}, x_max);
  svg << "</svg>\n";
  write_text_file(path, svg.str());
}

}  // namespace mmsft
