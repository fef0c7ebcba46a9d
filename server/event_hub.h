#pragma once
// Wakes the WatchJob streams of a job when the store commits a change to it. The store holds the
// events; the hub only says "look again".

#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace shears::server {

class EventHub {
 public:
  class Subscriber {
   public:
    virtual ~Subscriber() = default;
    // Called with the hub's lock held: must not block, and must not call back into the hub.
    virtual void OnJobChanged() = 0;
  };

  void Subscribe(const std::string& job_id, Subscriber* subscriber) ABSL_LOCKS_EXCLUDED(mu_);
  // After it returns, `subscriber` is never called again.
  void Unsubscribe(const std::string& job_id, Subscriber* subscriber) ABSL_LOCKS_EXCLUDED(mu_);
  void Notify(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  // Every job may have changed.
  void NotifyAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::map<std::string, std::set<Subscriber*>> subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shears::server
