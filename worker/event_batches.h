#pragma once
// A job's events, sent in batches from a thread of their own: the pruning thread only queues an
// event, and whatever queued while one ReportEvents call was in flight goes in the next, so a
// block's layer events cost one round trip rather than one each, and a slow server never holds
// up the engine.

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "shears/v1/job.pb.h"

namespace shears::worker {

class EventBatches {
 public:
  // At most this many events a call: far below any message limit (a layer event is ~100 bytes).
  static constexpr size_t kMaxBatch = 256;
  // `send` delivers one batch, in order, from the sending thread.
  using Send = std::function<void(const std::vector<v1::JobEvent>&)>;

  explicit EventBatches(Send send);
  // Flushes.
  ~EventBatches();
  EventBatches(const EventBatches&) = delete;
  EventBatches& operator=(const EventBatches&) = delete;

  void Add(v1::JobEvent event) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns once every event added before it has been through `send`.
  void Flush() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  const Send send_;
  absl::Mutex mu_;
  std::deque<v1::JobEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool sending_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace shears::worker
