#pragma once
// Retention (--retention): jobs that ended longer ago than that are deleted with their events, in
// small transactions on a thread of its own, so that the store does not grow without end and no
// call waits long behind a sweep.

#include <functional>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/job_store.h"

namespace shears::server {

class Retention {
 public:
  // Jobs deleted in one transaction.
  static constexpr int kBatch = 100;

  // Sweeps every `retention` / 4 (between 100 ms and a minute); `on_deleted` hears each batch.
  Retention(JobStore* store, absl::Duration retention, std::function<void(int deleted)> on_deleted);
  ~Retention();  // stops the thread
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  // One sweep now; returns how many jobs it deleted.
  int Sweep();

 private:
  JobStore* const store_;
  const absl::Duration retention_;
  const std::function<void(int)> on_deleted_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace shears::server
