#include "server/event_hub.h"

namespace shears::server {

bool EventHub::Subscribe(const std::string& job_id, Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  if (draining_) return false;
  subscribers_[job_id].insert(subscriber);
  return true;
}

void EventHub::Unsubscribe(const std::string& job_id, Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  it->second.erase(subscriber);
  if (it->second.empty()) subscribers_.erase(it);
}

void EventHub::Notify(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  for (Subscriber* s : it->second) s->OnJobChanged();
}

void EventHub::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (const auto& [job, subscribers] : subscribers_) {
    for (Subscriber* s : subscribers) s->OnDrain();
  }
}

void EventHub::NotifyAll() {
  absl::MutexLock lock(&mu_);
  for (const auto& [job, subscribers] : subscribers_) {
    for (Subscriber* s : subscribers) s->OnJobChanged();
  }
}

}  // namespace shears::server
