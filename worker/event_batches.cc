#include "worker/event_batches.h"

namespace shears::worker {

EventBatches::EventBatches(Send send) : send_(std::move(send)), thread_([this] { Loop(); }) {}

EventBatches::~EventBatches() {
  Flush();
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  thread_.join();
}

void EventBatches::Add(v1::JobEvent event) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(event));
}

void EventBatches::Flush() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](EventBatches* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) { return self->queue_.empty() && !self->sending_; },
      this));
}

void EventBatches::Loop() {
  for (;;) {
    std::vector<v1::JobEvent> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](EventBatches* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) { return !self->queue_.empty() || self->done_; },
          this));
      if (queue_.empty()) return;  // done
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      sending_ = true;
    }
    send_(batch);
    absl::MutexLock lock(&mu_);
    sending_ = false;
  }
}

}  // namespace shears::worker
