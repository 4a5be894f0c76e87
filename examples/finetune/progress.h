// Training progress on the terminal: a one-line bar redrawn in place when stdout is a
// terminal, plain periodic lines otherwise (logs, CI, pipes).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mmsft {

class Progress {
 public:
  Progress(int64_t total_steps, int64_t plain_every);
  // Called after every step; draws the bar (TTY) or prints every plain_every steps.
  void update(int64_t step, double loss, double lr, double pairs_per_second);
  // Prints a message on its own line without garbling the bar.
  void message(const std::string& text);
  void finish();

 private:
  int64_t total_;
  int64_t plain_every_;
  bool tty_;
  bool bar_drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace mmsft
