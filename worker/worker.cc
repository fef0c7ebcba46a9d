#include "worker/worker.h"

#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/channel.h"
#include "common/proto_time.h"
#include "common/rpc_status.h"
#include "worker/attempt/engine_process.h"
#include "worker/event_batches.h"
#include "worker/job_runner.h"
#include "worker/outbox.h"

namespace shears::worker {
namespace {

void Log(const std::string& message) { std::cerr << "shears-worker: " << message << std::endl; }

// A failure that may pass: the server away or restarting. CANCELLED is a server shutting down with
// the call in flight (the worker cancels none of its reports itself); found by make chaos, where an
// outcome cancelled so was dropped and the job ran again.
bool Transient(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::UNAVAILABLE || st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         st.error_code() == grpc::StatusCode::CANCELLED;
}

// The lease is no longer this attempt's: another attempt holds it, or the job is gone.
bool LeaseGone(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::FAILED_PRECONDITION || st.error_code() == grpc::StatusCode::NOT_FOUND;
}

// Report number `number` of a lease: the events in [first, last).
template <typename Iterator>
v1::ReportEventsRequest NumberedBatch(const std::string& job_id, const std::string& lease_id, int64_t number,
                                      Iterator first, Iterator last) {
  v1::ReportEventsRequest batch;
  batch.set_job_id(job_id);
  batch.set_lease_id(lease_id);
  batch.set_batch(number);
  for (; first != last; ++first) *batch.add_events() = *first;
  return batch;
}

// Retries a call that failed for a reason that may pass (the server restarting, a network blip)
// with backoff, for as long as `patience` says: a report or an outcome outlives a server outage
// instead of being dropped after a few seconds.
template <typename Call>
grpc::Status WithRetries(const std::string& what, Call call, const Worker::Patience& patience) {
  const absl::Time start = absl::Now();
  absl::Duration backoff = absl::Milliseconds(200);
  for (int tries = 1;; ++tries) {
    grpc::Status st = call();
    if (!Transient(st) || !patience(absl::Now() - start)) return st;
    if (tries == 1) Log(absl::StrCat(what, ": ", st.error_message(), "; trying again"));
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

// The server answered: it took the report, or refused it for a reason that will not pass (the
// lease is gone, a limit). An outage that outlasted the patience is no answer.
bool Answered(const grpc::Status& st) { return !Transient(st); }

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
    DeliverLeftovers();
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
      } else if (LeaseGone(st)) {
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
  const Patience patience = [this](absl::Duration waited) {
    return waited < (stopping_ ? kStoppingPatience : options_.outage_patience);
  };
  if (options_.metrics != nullptr) options_.metrics->JobStarted();
  // What the engine process is served with: its events, the fence, cancellation, byte counts.
  RunContext context;
  context.storage.counters = options_.storage.counters;
  context.cancelled = [&] { return cancel_requested || lease_lost || stopping_; };
  context.confirm_lease = [&]() -> absl::Status {
    if (lease_lost) return absl::AbortedError("the lease went to another attempt");
    v1::HeartbeatRequest request;
    request.set_job_id(job.id());
    request.set_lease_id(lease.lease_id());
    v1::HeartbeatResponse response;
    grpc::Status st =
        WithRetries(absl::StrCat("job ", job.id(), ": confirming the lease"),
                    [&] { return stub_->Heartbeat(Context(options_.rpc_timeout).get(), request, &response); }, patience);
    if (st.ok()) return absl::OkStatus();
    if (LeaseGone(st)) lease_lost = true;
    return absl::AbortedError(absl::StrCat("the lease could not be confirmed: ", st.error_message()));
  };
  // Every report goes through the outbox first: what the server has not taken when this worker
  // dies is delivered when it starts again.
  Outbox outbox(options_.work_dir, job.id(), lease.lease_id());
  std::atomic<bool> outbox_failed{false};
  int64_t batches = 0;  // numbered, so that a retry after a lost answer is not applied twice
  std::atomic<bool> events_refused{false};
  EventBatches events([&](const std::vector<v1::JobEvent>& batch) {
    if (lease_lost || events_refused) return;
    const v1::ReportEventsRequest request =
        NumberedBatch(job.id(), lease.lease_id(), ++batches, batch.begin(), batch.end());
    outbox.AddBatch(request).IgnoreError();
    const grpc::Status st = SendBatch(request, patience);
    if (Answered(st)) outbox.Done(request.batch()).IgnoreError();
    if (st.ok()) return;
    if (LeaseGone(st)) {
      lease_lost = true;
    } else if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      // The job's log is full: the outcome still goes, later events would be refused too.
      if (!events_refused.exchange(true)) {
        Log(absl::StrCat("job ", job.id(), ": events refused from here on: ", st.error_message()));
      }
    } else {
      // The server logs the batch number as a gap when the next batch arrives.
      Log(absl::StrCat("job ", job.id(), ": event batch ", request.batch(), " dropped: ", st.error_message()));
    }
  });
  context.on_event = [&](const v1::JobEvent& event) {
    if (options_.metrics != nullptr) options_.metrics->OnEvent(event);
    if (lease_lost) return;
    if (absl::Status kept = outbox.Append(event); !kept.ok() && !outbox_failed.exchange(true)) {
      Log(absl::StrCat("job ", job.id(), ": the outbox cannot keep events (", kept.message(),
                       "); they are sent, but lost if this worker dies"));
    }
    events.Add(event);
  };
  v1::AttemptStart start;
  start.set_job_id(job.id());
  start.set_tenant(job.tenant());
  *start.mutable_spec() = job.spec();
  AttemptOutcome outcome = RunInEngineProcess(options_.engine_binary, options_.engine_argv, start, context);
  const absl::StatusOr<v1::JobResult>& result = outcome.result;
  auto ended = [&](const std::string& outcome) {
    if (options_.metrics != nullptr) options_.metrics->JobEnded(outcome);
  };
  // A worker told to stop gives back a job it did not finish; any other end is the outcome.
  const bool give_back = stopping_ && !result.ok() && outcome.crash.empty();
  v1::CompleteJobRequest request;
  request.set_job_id(job.id());
  request.set_lease_id(lease.lease_id());
  std::string outcome_name;
  if (!give_back) {
    const size_t result_bytes = result.ok() ? result->ByteSizeLong() : 0;
    if (!outcome.crash.empty()) {
      // The engine process died; this one lives on. The server decides whether the job gets
      // another worker (--max-crashes).
      request.set_crash(outcome.crash);
      outcome_name = "crashed";
    } else if (result.ok() && result_bytes > static_cast<size_t>(options_.max_message_bytes) - 4096) {
      // Never the case for results as they are built (summaries only), but a limit set too low
      // fails the job with the reason rather than retrying an outcome the server cannot take.
      request.set_error(absl::StrCat("the result is ", result_bytes, " bytes, more than the RPC limit of ",
                                     options_.max_message_bytes, " bytes (--max-message-bytes)"));
      outcome_name = "failed";
    } else if (result.ok()) {
      *request.mutable_result() = *result;
      outcome_name = "succeeded";
    } else if (cancel_requested && absl::IsCancelled(result.status())) {
      request.set_cancelled(true);
      outcome_name = "cancelled";
    } else {
      request.set_error(std::string(result.status().message()));
      outcome_name = "failed";
    }
    // Kept before the events are flushed: a worker that dies waiting out an outage still owes
    // (and delivers, when it starts again) both, in order.
    outbox.SetOutcome(request).IgnoreError();
  }
  events.Flush();  // the events go before the outcome
  // Heartbeats go on until the outcome is delivered: an outcome waiting out a full store or a
  // restart keeps its lease (found by make chaos: a job whose outcome met a full store ran again).
  auto stop_heartbeats = [&] {
    finished.Notify();
    heartbeat.join();
  };
  if (lease_lost) {
    stop_heartbeats();
    Log(absl::StrCat("job ", job.id(), ": abandoned, the server gave it to another attempt"));
    outbox.Remove();
    ended("abandoned");
    return;
  }
  grpc::Status st;
  if (give_back) {
    v1::ReleaseJobRequest release;
    release.set_job_id(job.id());
    release.set_lease_id(lease.lease_id());
    v1::ReleaseJobResponse ignored;
    st = WithRetries(absl::StrCat("job ", job.id(), ": giving it back"),
                     [&] { return stub_->ReleaseJob(Context(options_.rpc_timeout).get(), release, &ignored); },
                     patience);
    Log(absl::StrCat("job ", job.id(), ": given back to the queue"));
    if (Answered(st)) outbox.Remove();
    stop_heartbeats();
    ended("released");
  } else {
    st = SendOutcome(request, patience);
    // Unanswered, it stays in the outbox: the lease loop tries it again before each lease.
    if (Answered(st)) outbox.Remove();
    stop_heartbeats();
    ended(outcome_name);
    Log(absl::StrCat("job ", job.id(), ": ",
                     result.ok() ? "succeeded" : absl::StrCat("ended: ", result.status().ToString())));
  }
  if (!st.ok()) Log(absl::StrCat("job ", job.id(), ": server did not take the outcome: ", st.error_message()));
}

grpc::Status Worker::SendBatch(const v1::ReportEventsRequest& request, const Patience& patience) {
  v1::ReportEventsResponse response;
  return WithRetries(absl::StrCat("job ", request.job_id(), ": event batch ", request.batch()),
                     [&] { return stub_->ReportEvents(Context(options_.rpc_timeout).get(), request, &response); },
                     patience);
}

grpc::Status Worker::SendOutcome(const v1::CompleteJobRequest& request, const Patience& patience) {
  v1::CompleteJobResponse response;
  return WithRetries(absl::StrCat("job ", request.job_id(), ": outcome"),
                     [&] { return stub_->CompleteJob(Context(options_.rpc_timeout).get(), request, &response); },
                     patience);
}

void Worker::DeliverLeftovers() {
  // Short: the server may be away, and leasing new work should not wait long behind old reports.
  const Patience patience = [this](absl::Duration waited) { return !stopping_ && waited < kStoppingPatience; };
  for (Outbox::Left& left : Outbox::FindLeft(options_.work_dir)) {
    const v1::Outbox& record = left.record;
    bool unanswered = false;
    bool lease_gone = false;
    auto note = [&](const grpc::Status& st) {
      unanswered |= !Answered(st);
      lease_gone |= LeaseGone(st);
    };
    for (const auto& batch : record.batches()) {
      if (!unanswered && !lease_gone) note(SendBatch(batch, patience));
    }
    int64_t number = record.last_batch();
    for (size_t i = 0; i < left.unbatched.size() && !unanswered && !lease_gone; i += EventBatches::kMaxBatch) {
      const auto first = left.unbatched.begin() + i;
      const auto last = left.unbatched.begin() + std::min(left.unbatched.size(), i + EventBatches::kMaxBatch);
      note(SendBatch(NumberedBatch(record.job_id(), record.lease_id(), ++number, first, last), patience));
    }
    if (record.has_outcome() && !unanswered && !lease_gone) note(SendOutcome(record.outcome(), patience));
    if (unanswered) continue;  // kept for the next round
    Log(absl::StrCat("job ", record.job_id(), ": ",
                     lease_gone ? "the lease ended while this worker was away; what it owed the server is dropped"
                                : "delivered what an earlier run of this worker owed the server",
                     record.has_outcome() ? " (events and the outcome)" : " (events)"));
    Outbox::Remove(options_.work_dir, record.lease_id());
  }
}

}  // namespace shears::worker
