#include "server/event_hub.h"

namespace shears::server {

void EventHub::Subscribe(const std::string& job_id, Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  subscribers_[job_id].insert(subscriber);
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

void EventHub::NotifyAll() {
  absl::MutexLock lock(&mu_);
  for (const auto& [job, subscribers] : subscribers_) {
    for (Subscriber* s : subscribers) s->OnJobChanged();
  }
}

}  // namespace shears::server
