#include "server/pruning_service.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "common/job_spec.h"
#include "common/limits.h"
#include "common/status_macros.h"
#include "server/auth/access.h"
#include "server/unary.h"

namespace shears::server {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr int kReplayBatch = 256;

absl::Status RequireJobId(const std::string& job_id) {
  return job_id.empty() ? absl::InvalidArgumentError("job_id: is required") : absl::OkStatus();
}

// The job, if `caller` may see it; another tenant's job is as absent as one never created.
absl::StatusOr<v1::Job> VisibleJob(JobStore* store, const Identity& caller, const std::string& job_id) {
  SHEARS_RETURN_IF_ERROR(RequireJobId(job_id));
  auto job = store->Get(job_id);
  if (job.ok() && !CanSee(caller, *job)) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  return job;
}

// Streams a job's events: first those already stored after `after_sequence`, then each new one
// as the store commits it, and finishes once the job's terminal state change has been sent.
class WatchReactor final : public grpc::ServerWriteReactor<v1::JobEvent>, public EventHub::Subscriber {
 public:
  WatchReactor(JobStore* store, EventHub* hub, std::string job_id, int64_t after_sequence)
      : store_(store), hub_(hub), job_id_(std::move(job_id)), last_sent_(after_sequence) {
    const bool subscribed = hub_->Subscribe(job_id_, this);
    absl::MutexLock lock(&mu_);
    draining_ = !subscribed;
    PumpLocked();
  }

  void OnJobChanged() override {
    absl::MutexLock lock(&mu_);
    PumpLocked();
  }
  void OnDrain() override {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    PumpLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
    PumpLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    hub_->Unsubscribe(job_id_, this);
    delete this;
  }

 private:
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return;
    if (draining_) {
      // UNAVAILABLE is what clients retry: through the Service, another replica continues the
      // stream from where this one stopped.
      return FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       absl::StrCat("the server is draining; watch again with after_sequence ",
                                                    last_sent_)));
    }
    if (pending_.empty()) {
      if (ended_) return FinishLocked(grpc::Status::OK);
      if (absl::Status st = Load(); !st.ok()) return FinishLocked(ToGrpcStatus(st));
    }
    if (pending_.empty()) {
      // Nothing new. A job that has ended committed its last event with its state, so one more
      // read after seeing the state finds that event if it is still unsent; otherwise the replay
      // started past the end.
      auto job = store_->Get(job_id_);
      if (!job.ok()) return FinishLocked(ToGrpcStatus(job.status()));
      if (!IsTerminal(job->state())) return;  // OnJobChanged pumps again
      if (absl::Status st = Load(); !st.ok()) return FinishLocked(ToGrpcStatus(st));
      if (pending_.empty()) return FinishLocked(grpc::Status::OK);
    }
    current_ = std::move(pending_.front());
    pending_.pop_front();
    last_sent_ = current_.sequence();
    if (current_.has_state_change() && IsTerminal(current_.state_change().state())) ended_ = true;
    writing_ = true;
    StartWrite(&current_);
  }

  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto events = store_->EventsAfter(job_id_, last_sent_, kReplayBatch);
    if (!events.ok()) return events.status();
    pending_.assign(events->begin(), events->end());
    return absl::OkStatus();
  }

  JobStore* const store_;
  EventHub* const hub_;
  const std::string job_id_;
  absl::Mutex mu_;
  int64_t last_sent_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::JobEvent> pending_ ABSL_GUARDED_BY(mu_);
  v1::JobEvent current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the terminal event has been sent
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* PruningService::CreateJob(grpc::CallbackServerContext* context,
                                                    const v1::CreateJobRequest* request, v1::Job* response) {
  return RespondAudited(
      context, *authenticator_, Api::kPruning, *audit_, "CreateJob", [&] { return response->id(); },
      [&](const Identity& caller) -> absl::Status {
        if (!request->has_spec()) return absl::InvalidArgumentError("spec: is required");
        if (request->request_id().size() > kMaxRequestIdBytes) {
          return absl::InvalidArgumentError(absl::StrCat("request_id: at most ", kMaxRequestIdBytes, " bytes"));
        }
        v1::JobSpec spec = request->spec();
        ApplySpecDefaults(spec);
        SHEARS_RETURN_IF_ERROR(ValidateSpec(spec));
        SHEARS_RETURN_IF_ERROR(CheckFileRoots(spec, file_roots_));
        SHEARS_RETURN_IF_ERROR(uri_policies_->Check(spec, TenantOf(caller)));
        SHEARS_ASSIGN_OR_RETURN(auto created,
                                store_->Create(spec, request->request_id(), TenantOf(caller), caller.principal));
        *response = std::move(created.job);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PruningService::GetJob(grpc::CallbackServerContext* context,
                                                 const v1::GetJobRequest* request, v1::Job* response) {
  return Respond(context, [&]() -> absl::Status {
    SHEARS_ASSIGN_OR_RETURN(Identity caller, Authorize(*authenticator_, *context, Api::kPruning));
    SHEARS_ASSIGN_OR_RETURN(*response, VisibleJob(store_, caller, request->job_id()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PruningService::ListJobs(grpc::CallbackServerContext* context,
                                                   const v1::ListJobsRequest* request,
                                                   v1::ListJobsResponse* response) {
  return Respond(context, [&]() -> absl::Status {
    SHEARS_ASSIGN_OR_RETURN(Identity caller, Authorize(*authenticator_, *context, Api::kPruning));
    if (request->page_size() < 0) return absl::InvalidArgumentError("page_size: must not be negative");
    if (!v1::JobState_IsValid(request->state())) return absl::InvalidArgumentError("state: unknown job state");
    const int page_size = request->page_size() == 0 ? kDefaultPageSize : std::min(request->page_size(), kMaxPageSize);
    SHEARS_ASSIGN_OR_RETURN(auto page, store_->List(request->state(), page_size, request->page_token(), TenantScope(caller)));
    for (auto& job : page.jobs) *response->add_jobs() = std::move(job);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PruningService::CancelJob(grpc::CallbackServerContext* context,
                                                    const v1::CancelJobRequest* request, v1::Job* response) {
  return RespondAudited(
      context, *authenticator_, Api::kPruning, *audit_, "CancelJob", [&] { return request->job_id(); },
      [&](const Identity& caller) -> absl::Status {
        SHEARS_RETURN_IF_ERROR(VisibleJob(store_, caller, request->job_id()).status());
        SHEARS_ASSIGN_OR_RETURN(*response, store_->Cancel(request->job_id()));
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::JobEvent>* PruningService::WatchJob(grpc::CallbackServerContext* context,
                                                                 const v1::WatchJobRequest* request) {
  auto caller = Authorize(*authenticator_, *context, Api::kPruning);
  absl::Status invalid = caller.status();
  if (invalid.ok() && request->after_sequence() < 0) {
    invalid = absl::InvalidArgumentError("after_sequence: must not be negative");
  }
  if (invalid.ok()) invalid = VisibleJob(store_, *caller, request->job_id()).status();
  if (!invalid.ok()) {
    class Rejected final : public grpc::ServerWriteReactor<v1::JobEvent> {
     public:
      explicit Rejected(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
      void OnDone() override { delete this; }
    };
    return new Rejected(invalid);
  }
  return new WatchReactor(store_, hub_, request->job_id(), request->after_sequence());
}

}  // namespace shears::server
