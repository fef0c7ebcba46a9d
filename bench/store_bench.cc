// The front service's throughput on each job store: CreateJob/s, GetJob/s and lease hand-outs/s
// with SQLite (one server), PostgreSQL with one replica and with three, then N WatchJob streams at
// once (1000 by default): the servers' memory per stream, and how fast one change each reaches all
// of them. Clients and servers share this machine's cores, so the figures are the service's on this
// machine, next to each other; the ratios are what to watch.
//   usage: store_bench WORK_DIR [JOBS] [STREAMS]
// PostgreSQL: the test server of this build tree must be running (make bench starts it).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/format.h"
#include "shears/v1/pruning.grpc.pb.h"
#include "shears/v1/workers.grpc.pb.h"
#include "tests/support/process.h"

namespace {

using shears::bench::Format;
using Clock = std::chrono::steady_clock;
namespace v1 = shears::v1;
constexpr int kClientThreads = 8;

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::unique_ptr<grpc::ClientContext> Context(int seconds = 30) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

// Resident memory of a process, in KiB.
int64_t RssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

// Runs `body(thread)` on kClientThreads threads.
void OnThreads(const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kClientThreads; ++t) threads.emplace_back(body, t);
  for (auto& t : threads) t.join();
}

// One WatchJob stream on the callback API: counts the events it receives.
class Stream : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  Stream(v1::Pruning::Stub* stub, const std::string& job_id, std::atomic<int64_t>* received)
      : received_(received) {
    request_.set_job_id(job_id);
    stub->async()->WatchJob(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    received_->fetch_add(1);
    StartRead(&event_);
  }
  void OnDone(const grpc::Status&) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  void Close() {
    context_.TryCancel();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

 private:
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::JobEvent event_;
  std::atomic<int64_t>* received_;
  absl::Mutex mu_;
  bool done_ = false;
};

// Calls that failed, and the first failure's status, by phase.
class Failures {
 public:
  void Add(const std::string& phase, const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (count_[phase]++ == 0) first_[phase] = absl::StrCat(status.error_code(), " ", status.error_message());
  }
  void Print(const std::string& name) {
    absl::MutexLock lock(&mu_);
    for (const auto& [phase, n] : count_) std::cerr << name << ": " << phase << ": " << n << " calls failed, the first " << first_[phase] << "\n";
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> count_;
  std::map<std::string, std::string> first_;
};

struct Row {
  std::string store;
  double creates = 0, gets = 0, leases = 0;
  double kib_per_stream = 0, fanout_seconds = 0;
};

Row Measure(const std::string& name, const std::string& work, int replicas, bool postgres, int jobs, int streams) {
  Row row{name};
  std::filesystem::create_directories(work);
  std::vector<std::string> flags = {"--lease-ttl", "600s"};
  if (postgres) {
    setenv("SHEARS_TEST_STORE", "postgresql", 1);
    flags.insert(flags.end(), {"--db", shears::testing::TestStoreUrl(work)});
    unsetenv("SHEARS_TEST_STORE");
  }
  std::vector<shears::testing::ServerProcess> servers;
  std::vector<std::unique_ptr<v1::Pruning::Stub>> pruning;
  std::vector<std::unique_ptr<v1::Workers::Stub>> workers;
  for (int i = 0; i < replicas; ++i) {
    const std::string dir = absl::StrCat(work, "/replica-", i);
    std::filesystem::create_directories(dir);
    servers.push_back(shears::testing::StartServer(dir, flags));
    if (servers.back().address.empty()) {
      std::cerr << name << ": a server did not start: " << servers.back().process->Log() << "\n";
      return row;
    }
    auto channel = grpc::CreateChannel(servers.back().address, grpc::InsecureChannelCredentials());
    pruning.push_back(v1::Pruning::NewStub(channel));
    workers.push_back(v1::Workers::NewStub(channel));
  }

  // CreateJob: each thread its share, on the replicas in turn.
  std::vector<std::string> ids(jobs);
  Failures failed;
  auto start = Clock::now();
  OnThreads([&](int t) {
    for (int j = t; j < jobs; j += kClientThreads) {
      v1::CreateJobRequest request;
      request.mutable_spec()->set_model_uri("file:///models/m");
      request.mutable_spec()->set_method(v1::METHOD_MAGNITUDE);
      request.mutable_spec()->set_target_sparsity(0.5);
      request.mutable_spec()->mutable_output()->set_uri(absl::StrCat("file:///out/", j));
      v1::Job job;
      if (auto st = pruning[j % replicas]->CreateJob(Context().get(), request, &job); !st.ok()) failed.Add("CreateJob", st);
      ids[j] = job.id();
    }
  });
  row.creates = jobs / SecondsSince(start);

  // GetJob for three seconds.
  std::atomic<int64_t> gets{0};
  start = Clock::now();
  OnThreads([&](int t) {
    for (int64_t k = t; SecondsSince(start) < 3.0; k += kClientThreads) {
      v1::GetJobRequest request;
      request.set_job_id(ids[k % jobs]);
      v1::Job job;
      if (auto st = pruning[k % replicas]->GetJob(Context().get(), request, &job); st.ok()) ++gets; else failed.Add("GetJob", st);
    }
  });
  row.gets = gets / SecondsSince(start);

  // LeaseJob until the queue is empty: kClientThreads workers, on the replicas in turn.
  std::atomic<int> leased{0};
  start = Clock::now();
  OnThreads([&](int t) {
    for (;;) {
      v1::LeaseJobRequest request;
      request.set_worker_id(absl::StrCat("bench-", t));
      v1::LeaseJobResponse response;
      if (auto st = workers[t % replicas]->LeaseJob(Context().get(), request, &response); !st.ok()) {
        failed.Add("LeaseJob", st);
        return;
      }
      if (!response.has_job()) return;
      ++leased;
    }
  });
  row.leases = leased / SecondsSince(start);
  if (leased != jobs) std::cerr << name << ": " << leased << " of " << jobs << " jobs leased\n";

  // WatchJob: `streams` streams on running jobs, spread over the replicas; then one change each
  // (a cancellation request, made through replica 0) and the time until every stream has it.
  int64_t rss_before = 0;
  for (auto& s : servers) rss_before += RssKib(s.process->pid());
  std::atomic<int64_t> received{0};
  std::vector<std::unique_ptr<Stream>> open;
  for (int k = 0; k < streams; ++k) {
    open.push_back(std::make_unique<Stream>(pruning[k % replicas].get(), ids[k % jobs], &received));
  }
  // Each replays the job's two events (queued, running) first.
  for (auto until = Clock::now() + std::chrono::seconds(60); received < 2 * streams && Clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int64_t rss_after = 0;
  for (auto& s : servers) rss_after += RssKib(s.process->pid());
  row.kib_per_stream = static_cast<double>(rss_after - rss_before) / streams;
  const int64_t before = received;
  start = Clock::now();
  OnThreads([&](int t) {
    for (int k = t; k < std::min(streams, jobs); k += kClientThreads) {
      v1::CancelJobRequest request;
      request.set_job_id(ids[k]);
      v1::Job job;
      if (auto st = pruning[0]->CancelJob(Context().get(), request, &job); !st.ok()) failed.Add("CancelJob", st);
    }
  });
  for (auto until = Clock::now() + std::chrono::seconds(120); received < before + streams && Clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  row.fanout_seconds = received >= before + streams ? SecondsSince(start) : -1;
  for (auto& s : open) s->Close();
  failed.Print(name);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: store_bench WORK_DIR [JOBS] [STREAMS]\n";
    return 2;
  }
  const std::string work = argv[1];
  const int jobs = argc > 2 ? std::atoi(argv[2]) : 2000;
  const int streams = argc > 3 ? std::atoi(argv[3]) : 1000;
  std::filesystem::remove_all(work);
  std::vector<Row> rows;
  rows.push_back(Measure("SQLite, 1 server", work + "/sqlite", 1, false, jobs, streams));
  // Directories (and so databases: TestStoreUrl names them after the directory) of this run alone.
  const std::string run = std::to_string(getpid());
  rows.push_back(Measure("PostgreSQL, 1 replica", work + "/pg1-" + run, 1, true, jobs, streams));
  rows.push_back(Measure("PostgreSQL, 3 replicas", work + "/pg3-" + run, 3, true, jobs, streams));
  std::cout << "\n" << jobs << " jobs created, read and leased by " << kClientThreads << " client threads; "
            << streams << " WatchJob streams (" << std::thread::hardware_concurrency() << " cores)\n\n"
            << "| store | CreateJob/s | GetJob/s | leases/s | KiB per stream | " << streams
            << " streams each told of one change |\n|---|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows) {
    std::cout << "| " << r.store << " | " << Format("%.0f", r.creates) << " | " << Format("%.0f", r.gets) << " | "
              << Format("%.0f", r.leases) << " | " << Format("%.1f", r.kib_per_stream) << " | "
              << (r.fanout_seconds < 0 ? std::string("did not finish") : Format("%.2f s", r.fanout_seconds)) << " |\n";
  }
  std::cout << "\nratios to SQLite: CreateJob " << Format("%.2f", rows[1].creates / rows[0].creates) << " (1 replica), "
            << Format("%.2f", rows[2].creates / rows[0].creates) << " (3); GetJob "
            << Format("%.2f", rows[1].gets / rows[0].gets) << ", " << Format("%.2f", rows[2].gets / rows[0].gets)
            << "; leases " << Format("%.2f", rows[1].leases / rows[0].leases) << ", "
            << Format("%.2f", rows[2].leases / rows[0].leases) << "\n";
  return 0;
}
