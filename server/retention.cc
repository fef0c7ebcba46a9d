#include "server/retention.h"

#include <algorithm>
#include <iostream>

namespace shears::server {

Retention::Retention(JobStore* store, absl::Duration retention, std::function<void(int)> on_deleted)
    : store_(store), retention_(retention), on_deleted_(std::move(on_deleted)) {
  const absl::Duration every = std::clamp(retention_ / 4, absl::Milliseconds(100), absl::Minutes(1));
  thread_ = std::thread([this, every] {
    while (!stop_.WaitForNotificationWithTimeout(every)) Sweep();
  });
}

Retention::~Retention() {
  stop_.Notify();
  thread_.join();
}

int Retention::Sweep() {
  const absl::Time cutoff = store_->options().clock() - retention_;
  int total = 0;
  for (;;) {
    auto deleted = store_->DeleteEndedBefore(cutoff, kBatch);
    if (!deleted.ok()) {
      std::cerr << "shears-server: retention: " << deleted.status() << std::endl;
      break;
    }
    total += *deleted;
    if (*deleted > 0 && on_deleted_) on_deleted_(*deleted);
    if (*deleted < kBatch || stop_.HasBeenNotified()) break;
  }
  return total;
}

}  // namespace shears::server
