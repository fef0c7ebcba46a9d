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
    // The server is draining: the stream ends, and its client goes on through another replica.
    virtual void OnDrain() = 0;
  };

  // False once the hub drains: the subscriber is not added, and should end at once.
  bool Subscribe(const std::string& job_id, Subscriber* subscriber) ABSL_LOCKS_EXCLUDED(mu_);
  // After it returns, `subscriber` is never called again.
  void Unsubscribe(const std::string& job_id, Subscriber* subscriber) ABSL_LOCKS_EXCLUDED(mu_);
  void Notify(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  // Every job may have changed.
  void NotifyAll() ABSL_LOCKS_EXCLUDED(mu_);
  // Tells every subscriber that the server drains, and refuses new ones.
  void Drain() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::map<std::string, std::set<Subscriber*>> subscribers_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace shears::server
