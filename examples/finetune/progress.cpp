#include "progress.h"

#include <unistd.h>

#include <cstdio>

namespace mmsft {

namespace {
std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600) std::snprintf(buffer, sizeof buffer, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60), (long long)(s % 60));
  else std::snprintf(buffer, sizeof buffer, "%02lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buffer;
}
}  // namespace

Progress::Progress(int64_t total_steps, int64_t plain_every)
    : total_(total_steps), plain_every_(plain_every > 0 ? plain_every : 1),
      tty_(isatty(fileno(stdout)) != 0), start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t step, double loss, double lr, double pairs_per_second) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = step > 0 ? elapsed / step * (total_ - step) : -1;
  if (tty_) {
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * step / total_) : 0;
    std::string bar(filled, '#');
    bar += std::string(width - filled, '.');
    std::printf("\r[%s] %lld/%lld  loss %.4f  lr %.2e  %.1f pairs/s  ETA %s   ", bar.c_str(),
                (long long)step, (long long)total_, loss, lr, pairs_per_second, format_duration(eta).c_str());
    std::fflush(stdout);
    bar_drawn_ = true;
  } else if (step % plain_every_ == 0 || step == total_) {
    std::printf("step %lld/%lld  loss %.4f  lr %.2e  %.1f pairs/s  elapsed %s  ETA %s\n", (long long)step,
                (long long)total_, loss, lr, pairs_per_second, format_duration(elapsed).c_str(),
                format_duration(eta).c_str());
    std::fflush(stdout);
  }
}

void Progress::message(const std::string& text) {
  if (bar_drawn_) std::printf("\n");
  bar_drawn_ = false;
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

void Progress::finish() {
  if (bar_drawn_) std::printf("\n");
  bar_drawn_ = false;
  std::fflush(stdout);
}

}  // namespace mmsft
