#include "server/lease_dispatcher.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"

namespace shears::server {

LeaseDispatcher::LeaseDispatcher(JobStore* store, std::function<void(int)> on_expired)
    : store_(store),
      on_expired_(std::move(on_expired)),
      // Often enough that an expired lease is noticed within a quarter of its time to live.
      expiry_interval_(std::clamp(store->options().lease_ttl / 4, absl::Milliseconds(20), absl::Seconds(5))),
      thread_([this] { Run(); }) {}

LeaseDispatcher::~LeaseDispatcher() { Stop(); }

void LeaseDispatcher::Enqueue(Waiter waiter) {
  absl::MutexLock lock(&mu_);
  if (stop_) {
    waiter.reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
    return;
  }
  ++polling_[waiter.worker_id];
  waiters_.push_back(waiter);
  wake_ = true;
}

void LeaseDispatcher::Finish(const Waiter& waiter, const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (--polling_[waiter.worker_id] == 0) polling_.erase(waiter.worker_id);
  }
  waiter.reactor->Finish(status);
}

int LeaseDispatcher::WaitingWorkers() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(polling_.size());
}

void LeaseDispatcher::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void LeaseDispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  thread_.join();
  std::deque<Waiter> waiters;
  {
    absl::MutexLock lock(&mu_);
    waiters.swap(waiters_);
  }
  for (auto& w : waiters) Finish(w, grpc::Status::OK);
}

void LeaseDispatcher::Run() {
  absl::Time next_expiry = absl::Now();
  for (;;) {
    std::deque<Waiter> waiters;
    {
      absl::MutexLock lock(&mu_);
      absl::Time until = next_expiry;
      for (const auto& w : waiters_) until = std::min(until, w.deadline);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_ || stop_; };
      mu_.AwaitWithDeadline(absl::Condition(&ready), until);
      if (stop_) return;
      wake_ = false;
      waiters.swap(waiters_);
    }
    // The store is called without mu_ held: its listeners call Wake().
    if (absl::Now() >= next_expiry) {
      if (auto expired = store_->ExpireLeases(); !expired.ok()) {
        std::cerr << "shears-server: expiring leases: " << expired.status() << "\n";
      } else if (*expired > 0 && on_expired_) {
        on_expired_(*expired);
      }
      next_expiry = absl::Now() + expiry_interval_;
    }
    waiters = Dispatch(std::move(waiters));
    absl::MutexLock lock(&mu_);
    // Waiters that arrived meanwhile queue behind the ones already waiting.
    waiters_.insert(waiters_.begin(), waiters.begin(), waiters.end());
  }
}

std::deque<LeaseDispatcher::Waiter> LeaseDispatcher::Dispatch(std::deque<Waiter> waiters) {
  std::deque<Waiter> remaining;
  bool queue_empty = false;
  const absl::Time now = absl::Now();
  for (auto& w : waiters) {
    if (w.context->IsCancelled()) {
      Finish(w, grpc::Status::CANCELLED);
      continue;
    }
    if (!queue_empty) {
      auto lease = store_->LeaseNext(w.worker_id);
      if (!lease.ok()) {
        Finish(w, ToGrpcStatus(lease.status()));
        continue;
      }
      if (lease->has_value() && w.context->IsCancelled()) {
        // The caller went away while the lease was made: the job goes straight back, its attempt
        // uncounted, rather than waiting out a lease nobody holds.
        if (auto st = store_->Release((*lease)->job.id(), (*lease)->lease_id,
                                      absl::StrCat("worker ", w.worker_id, " stopped waiting before the lease reached it"));
            !st.ok()) {
          std::cerr << "shears-server: giving back a lease nobody took: " << st << "\n";
        }
        Finish(w, grpc::Status::CANCELLED);
        continue;
      }
      if (lease->has_value()) {
        *w.response->mutable_job() = (*lease)->job;
        w.response->set_lease_id((*lease)->lease_id);
        *w.response->mutable_lease_ttl() = ToProtoDuration(store_->options().lease_ttl);
        Finish(w, grpc::Status::OK);
        continue;
      }
      queue_empty = true;
    }
    if (now >= w.deadline) {
      Finish(w, grpc::Status::OK);  // no job this time; the worker asks again
    } else {
      remaining.push_back(w);
    }
  }
  return remaining;
}

}  // namespace shears::server
