#include "worker/worker.h"

#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/channel.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "worker/event_batches.h"
#include "worker/job_runner.h"

namespace shears::worker {
namespace {

void Log(const std::string& message) { std::cerr << "shears-worker: " << message << std::endl; }

// Retries a call that failed for a reason that may pass (the server restarting, a network blip)
// with backoff, for as long as `patience` says: a report or an outcome outlives a server outage
// instead of being dropped after a few seconds.
template <typename Call>
grpc::Status WithRetries(Call call, const std::function<bool(absl::Duration waited)>& patience) {
  const absl::Time start = absl::Now();
  absl::Duration backoff = absl::Milliseconds(200);
  for (;;) {
    grpc::Status st = call();
    const bool transient = st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!transient || !patience(absl::Now() - start)) return st;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

}  // namespace

Worker::Worker(WorkerOptions options)
    : options_(std::move(options)),
      stub_(v1::Workers::NewStub(options_.channel != nullptr
                                     ? options_.channel
                                     : BoundedChannel(options_.server, options_.max_message_bytes))) {}

std::unique_ptr<grpc::ClientContext> Worker::Context(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  // A call made while the server is away waits (to its deadline) for the connection instead of
  // failing at once: waiting calls are what make gRPC try to reconnect, so a worker finds a
  // restarted server within its reconnect backoff, well inside the grace its leases get.
  context->set_wait_for_ready(true);
  AddToken(*context, options_.token.Get());
  return context;
}

void Worker::Stop() {
  stopping_ = true;
  absl::MutexLock lock(&mu_);
  if (polling_ != nullptr) polling_->TryCancel();
}

void Worker::Run() {
  absl::Duration backoff = absl::Milliseconds(200);
  while (!stopping_) {
    v1::LeaseJobRequest request;
    request.set_worker_id(options_.worker_id);
    *request.mutable_wait() = ToProtoDuration(options_.poll_wait);
    v1::LeaseJobResponse response;
    auto context = Context(options_.poll_wait + options_.rpc_timeout);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      polling_ = context.get();
    }
    grpc::Status status = stub_->LeaseJob(context.get(), request, &response);
    {
      absl::MutexLock lock(&mu_);
      polling_ = nullptr;
    }
    if (stopping_) {
      // A lease granted as the poll was cut short goes straight back.
      if (status.ok() && response.has_job()) {
        v1::ReleaseJobRequest release;
        release.set_job_id(response.job().id());
        release.set_lease_id(response.lease_id());
        v1::ReleaseJobResponse ignored;
        stub_->ReleaseJob(Context(options_.rpc_timeout).get(), release, &ignored);
      }
      break;
    }
    if (!status.ok()) {
      Log(absl::StrCat("lease: ", status.error_message(), "; retrying in ", absl::FormatDuration(backoff)));
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(10));
      continue;
    }
    backoff = absl::Milliseconds(200);
    if (response.has_job()) RunLeased(response);
  }
}

void Worker::RunLeased(const v1::LeaseJobResponse& lease) {
  const v1::Job& job = lease.job();
  Log(absl::StrCat("job ", job.id(), ": attempt ", job.attempt_count(), " started"));
  std::atomic<bool> cancel_requested{false};
  std::atomic<bool> lease_lost{false};
  absl::Notification finished;

  // Heartbeats run beside the engine: the engine only polls the flags they set.
  const absl::Duration interval = std::max(FromProtoDuration(lease.lease_ttl()) / 3, absl::Milliseconds(10));
  std::thread heartbeat([&] {
    while (!finished.WaitForNotificationWithTimeout(interval)) {
      v1::HeartbeatRequest request;
      request.set_job_id(job.id());
      request.set_lease_id(lease.lease_id());
      v1::HeartbeatResponse response;
      grpc::Status st = stub_->Heartbeat(Context(options_.rpc_timeout).get(), request, &response);
      if (st.ok()) {
        if (response.cancel_requested()) cancel_requested = true;
      } else if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                 st.error_code() == grpc::StatusCode::NOT_FOUND) {
        Log(absl::StrCat("job ", job.id(), ": lease lost: ", st.error_message()));
        lease_lost = true;
      } else {
        Log(absl::StrCat("job ", job.id(), ": heartbeat: ", st.error_message(), "; trying again"));
      }
    }
  });

  // How long a report or the outcome waits out a server that does not answer: the server gives
  // running leases a TTL's grace when it comes back, so until it does the lease may still be ours.
  // A worker told to stop (SIGTERM, within Kubernetes' grace period) waits less.
  const auto patience = [this](absl::Duration waited) {
    return waited < (stopping_ ? kStoppingPatience : options_.outage_patience);
  };
  if (options_.metrics != nullptr) options_.metrics->JobStarted();
  RunContext context;
  context.job_id = job.id();
  context.work_dir = options_.work_dir;
  context.storage = options_.storage;
  // The job's tenant's policy and keys, and nobody else's.
  absl::Status tenant_storage = absl::OkStatus();
  if (options_.uri_policy.has_value()) {
    auto policy = options_.uri_policy->For(job.tenant());
    if (policy.ok()) {
      context.storage.policy = std::make_shared<const TenantUriPolicy>(std::move(*policy));
    } else {
      tenant_storage = policy.status();
    }
  }
  if (options_.tenant_credentials.has_value()) {
    auto found = options_.tenant_credentials->find(job.tenant());
    context.storage.credentials =
        found != options_.tenant_credentials->end() ? found->second : StorageCredentials{};
  }
  context.device = options_.device;
  context.cancelled = [&] { return cancel_requested || lease_lost || stopping_; };
  // The fence: a heartbeat answered now says the lease is still this attempt's (and renews it).
  context.confirm_lease = [&]() -> absl::Status {
    if (lease_lost) return absl::AbortedError("the lease went to another attempt");
    v1::HeartbeatRequest request;
    request.set_job_id(job.id());
    request.set_lease_id(lease.lease_id());
    v1::HeartbeatResponse response;
    grpc::Status st =
        WithRetries([&] { return stub_->Heartbeat(Context(options_.rpc_timeout).get(), request, &response); }, patience);
    if (st.ok()) return absl::OkStatus();
    if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION || st.error_code() == grpc::StatusCode::NOT_FOUND) {
      lease_lost = true;
    }
    return absl::AbortedError(absl::StrCat("the lease could not be confirmed: ", st.error_message()));
  };
  int64_t batches = 0;  // numbered, so that a retry after a lost answer is not applied twice
  EventBatches events([&](const std::vector<v1::JobEvent>& batch) {
    if (lease_lost) return;
    v1::ReportEventsRequest request;
    request.set_job_id(job.id());
    request.set_lease_id(lease.lease_id());
    request.set_batch(++batches);
    for (const auto& event : batch) *request.add_events() = event;
    v1::ReportEventsResponse response;
    grpc::Status st = WithRetries(
        [&] { return stub_->ReportEvents(Context(options_.rpc_timeout).get(), request, &response); }, patience);
    if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) lease_lost = true;
  });
  context.on_event = [&](const v1::JobEvent& event) {
    if (options_.metrics != nullptr) options_.metrics->OnEvent(event);
    if (!lease_lost) events.Add(event);
  };
  absl::StatusOr<v1::JobResult> result =
      tenant_storage.ok() ? RunJob(job.spec(), context) : absl::StatusOr<v1::JobResult>(tenant_storage);
  events.Flush();  // the events go before the outcome
  finished.Notify();
  heartbeat.join();

  auto ended = [&](const std::string& outcome) {
    if (options_.metrics != nullptr) options_.metrics->JobEnded(outcome);
  };
  if (lease_lost) {
    Log(absl::StrCat("job ", job.id(), ": abandoned, the server gave it to another attempt"));
    ended("abandoned");
    return;
  }
  v1::CompleteJobRequest request;
  request.set_job_id(job.id());
  request.set_lease_id(lease.lease_id());
  grpc::Status st;
  if (stopping_ && !result.ok()) {
    v1::ReleaseJobRequest release;
    release.set_job_id(job.id());
    release.set_lease_id(lease.lease_id());
    v1::ReleaseJobResponse ignored;
    st = WithRetries([&] { return stub_->ReleaseJob(Context(options_.rpc_timeout).get(), release, &ignored); },
                     patience);
    Log(absl::StrCat("job ", job.id(), ": given back to the queue"));
    ended("released");
  } else {
    const size_t result_bytes = result.ok() ? result->ByteSizeLong() : 0;
    if (result.ok() && result_bytes > static_cast<size_t>(options_.max_message_bytes) - 4096) {
      // Never the case for results as they are built (summaries only), but a limit set too low
      // fails the job with the reason rather than retrying an outcome the server cannot take.
      request.set_error(absl::StrCat("the result is ", result_bytes, " bytes, more than the RPC limit of ",
                                     options_.max_message_bytes, " bytes (--max-message-bytes)"));
      ended("failed");
    } else if (result.ok()) {
      *request.mutable_result() = *result;
      ended("succeeded");
    } else if (cancel_requested && absl::IsCancelled(result.status())) {
      request.set_cancelled(true);
      ended("cancelled");
    } else {
      request.set_error(std::string(result.status().message()));
      ended("failed");
    }
    v1::CompleteJobResponse ignored;
    st = WithRetries([&] { return stub_->CompleteJob(Context(options_.rpc_timeout).get(), request, &ignored); },
                     patience);
    Log(absl::StrCat("job ", job.id(), ": ",
                     result.ok() ? "succeeded" : absl::StrCat("ended: ", result.status().ToString())));
  }
  if (!st.ok()) Log(absl::StrCat("job ", job.id(), ": server did not take the outcome: ", st.error_message()));
}

}  // namespace shears::worker
