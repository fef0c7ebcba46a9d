#include "server/server_metrics.h"

#include <iostream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "shears/v1/job.pb.h"
#include "shears/v1/pruning.pb.h"
#include "shears/v1/workers.pb.h"

namespace shears::server {
namespace {

using prometheus::Histogram;

// Queue waits run from a job's creation to its first lease: from instant to hours.
const Histogram::BucketBoundaries kQueueWaitBuckets = {0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 14400};
// Runs last from seconds (a small model) to a day (a large one fine-tuned).
const Histogram::BucketBoundaries kRunBuckets = {1,    5,    15,   30,    60,    120,   300,
                                                 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400};

// The methods that may appear as label values, "service/method"; any other path a client invents
// (an unknown service, or an unknown method of a known one) is counted under "other" so that it
// cannot grow the label set.
bool IsKnownMethod(const std::string& service, const std::string& method) {
  static const auto* known = [] {
    auto* names = new std::set<std::string>{"grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch",
                                            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"};
    // Through a message of each file, so that the descriptors are linked in whoever counts.
    for (const auto* descriptor : {v1::CreateJobRequest::descriptor()->file()->FindServiceByName("Pruning"),
                                   v1::LeaseJobRequest::descriptor()->file()->FindServiceByName("Workers")}) {
      for (int i = 0; i < descriptor->method_count(); ++i) {
        names->insert(absl::StrCat(descriptor->full_name(), "/", descriptor->method(i)->name()));
      }
    }
    return names;
  }();
  return known->count(absl::StrCat(service, "/", method)) > 0;
}

// "METHOD_WANDA" -> "wanda", "JOB_STATE_SUCCEEDED" -> "succeeded".
std::string Label(const std::string& enum_name, const std::string& prefix) {
  return absl::AsciiStrToLower(enum_name.substr(prefix.size()));
}
std::string MethodLabel(v1::Method method) { return Label(v1::Method_Name(method), "METHOD_"); }
std::string StateLabel(v1::JobState state) { return Label(v1::JobState_Name(state), "JOB_STATE_"); }

std::vector<v1::Method> AllMethods() {
  std::vector<v1::Method> methods;
  const auto* descriptor = v1::Method_descriptor();
  for (int i = 0; i < descriptor->value_count(); ++i) {
    const auto method = static_cast<v1::Method>(descriptor->value(i)->number());
    if (method != v1::METHOD_UNSPECIFIED) methods.push_back(method);
  }
  return methods;
}

constexpr v1::JobState kStates[] = {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED,
                                    v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED};

double Seconds(const google::protobuf::Timestamp& from, const google::protobuf::Timestamp& to) {
  return absl::ToDoubleSeconds(FromProtoTime(to) - FromProtoTime(from));
}

}  // namespace

class ServerMetrics::Interceptor final : public grpc::experimental::Interceptor {
 public:
  Interceptor(ServerMetrics* metrics, const char* method) : metrics_(metrics), method_(method) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->CountRpc(method_, methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* const metrics_;
  const char* const method_;
};

class ServerMetrics::InterceptorFactoryImpl final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit InterceptorFactoryImpl(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new Interceptor(metrics_, info->method());
  }

 private:
  ServerMetrics* const metrics_;
};

ServerMetrics::ServerMetrics(JobStore* store, std::function<int()> idle_workers)
    : store_(store),
      idle_workers_(std::move(idle_workers)),
      registry_(std::make_shared<prometheus::Registry>()),
      jobs_(prometheus::BuildGauge().Name("shears_jobs").Help("Jobs in the store by state").Register(*registry_)),
      created_(prometheus::BuildCounter()
                   .Name("shears_jobs_created_total")
                   .Help("Jobs created, by method")
                   .Register(*registry_)),
      finished_(prometheus::BuildCounter()
                    .Name("shears_jobs_finished_total")
                    .Help("Jobs that ended, by method and outcome (succeeded, failed, cancelled)")
                    .Register(*registry_)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("shears_job_queue_wait_seconds")
                      .Help("Time from a job's creation to its first lease, by method")
                      .Register(*registry_)),
      run_time_(prometheus::BuildHistogram()
                    .Name("shears_job_run_seconds")
                    .Help("Time from a job's first lease to its end, by method and outcome")
                    .Register(*registry_)),
      retries_(prometheus::BuildCounter()
                   .Name("shears_job_retries_total")
                   .Help("Leases of a job after its first attempt's lease expired, by method")
                   .Register(*registry_)),
      lease_expiries_(prometheus::BuildCounter()
                          .Name("shears_lease_expiries_total")
                          .Help("Leases taken back because their worker stopped heartbeating")
                          .Register(*registry_)
                          .Add({})),
      deleted_(prometheus::BuildCounter()
                   .Name("shears_jobs_deleted_total")
                   .Help("Ended jobs deleted with their events after the retention period (--retention)")
                   .Register(*registry_)
                   .Add({})),
      workers_(prometheus::BuildGauge()
                   .Name("shears_workers")
                   .Help("Connected workers: idle (in a long poll for a job) or busy (holding a lease)")
                   .Register(*registry_)),
      rpcs_(prometheus::BuildCounter()
                .Name("shears_grpc_requests_total")
                .Help("RPCs answered, by service, method and status code")
                .Register(*registry_)) {
  // Every series a dashboard shows exists from the start at zero, so that rates and quantiles see
  // the first job's increase instead of a series appearing from nothing.
  for (v1::Method method : AllMethods()) {
    const std::string m = MethodLabel(method);
    created_.Add({{"method", m}});
    retries_.Add({{"method", m}});
    queue_wait_.Add({{"method", m}}, kQueueWaitBuckets);
    for (v1::JobState outcome : {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
      finished_.Add({{"method", m}, {"outcome", StateLabel(outcome)}});
      run_time_.Add({{"method", m}, {"outcome", StateLabel(outcome)}}, kRunBuckets);
    }
  }
  for (v1::JobState state : kStates) jobs_.Add({{"state", StateLabel(state)}});
  for (const char* state : {"idle", "busy"}) workers_.Add({{"state", state}});
}

void ServerMetrics::OnJobChanged(const JobStore::Change& change) {
  const v1::Job& job = change.job;
  if (change.previous_state == job.state()) return;  // progress, or a cancellation request
  const std::string method = MethodLabel(job.spec().method());
  if (change.previous_state == v1::JOB_STATE_UNSPECIFIED) created_.Add({{"method", method}}).Increment();
  if (job.state() == v1::JOB_STATE_RUNNING) {
    // A job given back on a worker's shutdown keeps its attempt count, so its next lease is
    // neither a first wait nor a retry.
    if (change.first_lease) {
      queue_wait_.Add({{"method", method}}, kQueueWaitBuckets).Observe(Seconds(job.create_time(), job.start_time()));
    } else if (job.attempt_count() > 1) {
      retries_.Add({{"method", method}}).Increment();
    }
  }
  if (IsTerminal(job.state())) {
    const std::string outcome = StateLabel(job.state());
    finished_.Add({{"method", method}, {"outcome", outcome}}).Increment();
    // A job cancelled in the queue never ran.
    if (job.has_start_time()) {
      run_time_.Add({{"method", method}, {"outcome", outcome}}, kRunBuckets)
          .Observe(Seconds(job.start_time(), job.end_time()));
    }
  }
}

void ServerMetrics::OnLeasesExpired(int count) { lease_expiries_.Increment(count); }

void ServerMetrics::OnJobsDeleted(int count) { deleted_.Increment(count); }

void ServerMetrics::CountRpc(const char* full_method, grpc::StatusCode code) {
  // "/package.Service/Method"
  std::string path = full_method == nullptr ? "" : full_method;
  const size_t slash = path.rfind('/');
  std::string service = slash == std::string::npos || slash == 0 ? "" : path.substr(1, slash - 1);
  std::string method = slash == std::string::npos ? "" : path.substr(slash + 1);
  if (!IsKnownMethod(service, method)) service = method = "other";
  static const char* const kCodes[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  const std::string code_name = index >= 0 && index <= 16 ? kCodes[index] : "UNKNOWN";
  rpcs_.Add({{"service", service}, {"method", method}, {"code", code_name}}).Increment();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ServerMetrics::InterceptorFactory() {
  return std::make_unique<InterceptorFactoryImpl>(this);
}

std::vector<prometheus::MetricFamily> ServerMetrics::Collect() const {
  if (auto census = store_->TakeCensus(); census.ok()) {
    for (v1::JobState state : kStates) {
      auto count = census->jobs.find(state);
      jobs_.Add({{"state", StateLabel(state)}}).Set(count == census->jobs.end() ? 0 : double(count->second));
    }
    workers_.Add({{"state", "busy"}}).Set(double(census->busy_workers));
  } else {
    std::cerr << "shears-server: metrics: " << census.status() << "\n";
  }
  workers_.Add({{"state", "idle"}}).Set(idle_workers_());
  return registry_->Collect();
}

}  // namespace shears::server
