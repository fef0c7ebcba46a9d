#pragma once
// Where a job's time goes: seconds per stage (load, tokenize, calibrate, prune, evaluate, measure,
// write; the worker adds download and publish), summed over the blocks. Plain C++, like report.h.

#include <chrono>
#include <string>
#include <vector>

namespace shears::engine {

struct StageTime {
  std::string stage;
  double seconds = 0.0;
};

// Not thread-safe: the pruning thread times its own stages.
class StageClock {
 public:
  // Times a scope: `auto timed = clock.Time("load");`. Scopes do not nest.
  class Scope {
   public:
    Scope(StageClock* clock, std::string stage)
        : clock_(clock), stage_(std::move(stage)), start_(std::chrono::steady_clock::now()) {}
    ~Scope() {
      if (clock_ != nullptr) {
        clock_->Add(stage_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
      }
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    StageClock* clock_;
    std::string stage_;
    std::chrono::steady_clock::time_point start_;
  };

  Scope Time(std::string stage) { return Scope(this, std::move(stage)); }

  void Add(const std::string& stage, double seconds) {
    for (auto& t : times_) {
      if (t.stage == stage) {
        t.seconds += seconds;
        return;
      }
    }
    times_.push_back({stage, seconds});
  }

  // In the order the stages first ran.
  const std::vector<StageTime>& times() const { return times_; }
  double total() const {
    double sum = 0.0;
    for (const auto& t : times_) sum += t.seconds;
    return sum;
  }

 private:
  std::vector<StageTime> times_;
};

}  // namespace shears::engine
