#pragma once
// Every metric shears-server exports, in one place. Labels are bounded sets (method, state,
// outcome, gRPC method and code), never job ids or URIs.

#include <functional>
#include <memory>
#include <vector>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "server/job_store.h"

namespace shears::server {

class ServerMetrics final : public prometheus::Collectable {
 public:
  // Jobs by state and busy workers come from `store` at each scrape, idle workers from
  // `idle_workers` (the lease dispatcher's long polls).
  ServerMetrics(JobStore* store, std::function<int()> idle_workers);

  // Counts creations, retries and outcomes and times queue waits and runs from the store's changes.
  void OnJobChanged(const JobStore::Change& change);
  void OnLeasesExpired(int count);
  void OnJobsDeleted(int count);
  // Counts every RPC the server answers by service, method and status code.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  std::vector<prometheus::MetricFamily> Collect() const override;

  // Counts one answered call of "/package.Service/Method" (what the interceptor calls).
  void CountRpc(const char* full_method, grpc::StatusCode code);

 private:
  class Interceptor;
  class InterceptorFactoryImpl;

  JobStore* const store_;
  const std::function<int()> idle_workers_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Counter>& created_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& run_time_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Counter& lease_expiries_;
  prometheus::Counter& deleted_;
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Family<prometheus::Counter>& rpcs_;
};

}  // namespace shears::server
