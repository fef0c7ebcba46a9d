// shears-chaos: the fault-injection suite (`make chaos`). Each trial starts a server, two workers
// and a few jobs on loopback, then does one of the things an operator's bad day does to them at
// a random moment: kill -9 a worker, kill -9 the server (mid-lease, or as a job publishes), restart
// it gently, fill its store, kill the S3 store mid-upload. When every job has ended, an invariant
// checker reads the service from outside:
//   - every created job ended exactly once (one terminal state change, the last event);
//   - every SUCCEEDED job has a manifest whose files have its sizes and SHA-256s;
//   - no FAILED or CANCELLED job has a manifest;
//   - no job's event sequence has a gap, and no report batch was lost (no report_gap event);
//   - no attempt was burned by a restart alone (in trials that killed no worker, every job ran
//     on attempt 1).
// With --replicas 3 (`make chaos-replicas`), each trial runs three server replicas on one
// PostgreSQL database (the test server scripts/test-postgres.sh starts) and three workers, each
// dialing every replica; the faults are then kill -9 of one or two replicas, a replica drained,
// kill -9 of a worker (alone or with a replica), and a PostgreSQL restart (an immediate stop, as a
// crash or failover).
// It ends with `chaos: <N> trials, <J> jobs, <V> invariant violations`, exit status 1 when V > 0.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <cstring>
#include <iostream>
#include <algorithm>
#include <map>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"
#include "shears/v1/pruning.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/s3_peer.h"
#include "worker/storage/filesystem_factory.h"

namespace shears::chaos {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::Process;

constexpr const char* kFaults[] = {"kill-worker", "kill-server", "kill-server-publishing", "restart-server",
                                   "fill-store",  "kill-s3"};
constexpr const char* kReplicaFaults[] = {"kill-replica", "kill-two-replicas", "drain-replica",
                                          "kill-worker-and-replica", "restart-postgres", "kill-worker"};
constexpr int kJobsPerTrial = 3;

std::string Binary(const std::string& name) { return std::string(SHEARS_BINARY_DIR) + "/" + name; }

void Sleep(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

class Trial {
 public:
  Trial(int number, const std::string& fault, std::mt19937_64& rng, const std::string& model, int replicas)
      : number_(number), fault_(fault), rng_(rng), model_(model), replicas_(replicas) {
    dir_ = fs::temp_directory_path() / absl::StrCat("shears-chaos-", getpid(), "-", number);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~Trial() {
    workers_.clear();
    servers_.clear();
    s3_.reset();
    std::error_code ec;
    if (violations_.empty()) fs::remove_all(dir_, ec);  // kept for a reader when something broke
  }

  // Runs the trial; returns the violations found.
  std::vector<std::string> Run() {
    const bool s3 = fault_ == "kill-s3";
    if (s3) s3_ = std::make_unique<testing::S3Peer>(dir_.string());
    if (replicas_ > 1) {
      // One database for the trial's replicas (SHEARS_TEST_STORE=postgresql: tests/support/process.h).
      setenv("SHEARS_TEST_STORE", "postgresql", 1);
      store_ = testing::TestStoreUrl(dir_.string());
      if (store_.rfind("postgresql://", 0) != 0) return {"no PostgreSQL database"};
    }
    for (int i = 0; i < replicas_; ++i) {
      StartServer(i, fault_ == "fill-store" ? std::vector<std::string>{"--max-db-bytes", "65536"}
                                            : std::vector<std::string>{});
      if (addresses_[i].empty()) return {absl::StrCat("server ", i, " did not start")};
      ports_.push_back(addresses_[i].substr(addresses_[i].rfind(':') + 1));
    }
    for (int i = 0; i < std::max(2, replicas_); ++i) StartWorker(i);
    auto channel = grpc::CreateChannel(Dial(0), grpc::InsecureChannelCredentials());
    pruning_ = v1::Pruning::NewStub(channel);
    for (int i = 0; i < kJobsPerTrial; ++i) {
      v1::CreateJobRequest request;
      auto* spec = request.mutable_spec();
      spec->set_model_uri("file://" + model_);
      spec->set_method(v1::METHOD_MAGNITUDE);
      spec->set_target_sparsity(0.5);
      spec->mutable_output()->set_uri(s3 ? absl::StrCat("s3://models/chaos-", getpid(), "-", number_, "/job-", i)
                                         : "file://" + (dir_ / absl::StrCat("out-", i)).string());
      request.set_request_id(absl::StrCat("job-", i));
      v1::Job job;
      // Retried: the store may be full, the server restarting (the request id keeps it to one job).
      for (int tries = 0; tries < 100; ++tries) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        context.set_wait_for_ready(true);
        if (pruning_->CreateJob(&context, request, &job).ok()) break;
        Sleep(0.1);
      }
      if (job.id().empty()) return {absl::StrCat("job ", i, " could not be created")};
      jobs_.push_back(job.id());
      outputs_.push_back(spec->output().uri());
    }
    Inject();
    if (!WaitForTheEnd(std::chrono::seconds(120))) violations_.push_back("jobs still running after 120 s");
    Check();
    return violations_;
  }

  int jobs() const { return static_cast<int>(jobs_.size()); }
  // How many had not ended when the fault came (kill-server-publishing: just before it).
  int open_at_fault() const { return open_at_fault_; }
  // How the jobs ended, e.g. "3 SUCCEEDED" or "2 SUCCEEDED, 1 FAILED".
  const std::string& outcomes() const { return outcomes_; }

 private:
  // Replica `i` (0 alone), restarted on its own port.
  void StartServer(int i, const std::vector<std::string>& extra = {}) {
    // Replicas: a longer TTL, for a PostgreSQL restart's seconds without heartbeats.
    std::vector<std::string> flags = {"--lease-ttl", replicas_ > 1 ? "5s" : "2s", "--max-attempts", "5"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    if (static_cast<int>(ports_.size()) > i) {  // a restart: the same port, which the workers dial
      flags.insert(flags.end(), {"--listen", "127.0.0.1:" + ports_[i]});
    }
    fs::path dir = dir_;
    if (replicas_ > 1) {
      dir = dir_ / absl::StrCat("replica-", i);
      fs::create_directories(dir);
      flags.insert(flags.end(), {"--db", store_});
    }
    auto server = testing::StartServer(dir.string(), flags);
    servers_.resize(std::max<size_t>(servers_.size(), i + 1));
    addresses_.resize(servers_.size());
    servers_[i] = std::move(server.process);
    addresses_[i] = server.address;
  }

  // What a client dials: the one server, or every replica starting from the `first`th (gRPC's
  // pick_first goes down the list when one dies, as a Service would route around it).
  std::string Dial(int first) const {
    if (replicas_ == 1) return addresses_[0];
    std::string target = "ipv4:";
    for (int k = 0; k < replicas_; ++k) {
      const int i = (first + k) % replicas_;
      absl::StrAppend(&target, k ? "," : "", "127.0.0.1:", ports_.size() > static_cast<size_t>(i) ? ports_[i] : "");
    }
    return target;
  }

  void StartWorker(int i) {
    workers_.resize(std::max<size_t>(workers_.size(), i + 1));
    workers_[i] = std::make_unique<Process>(
        std::vector<std::string>{Binary("worker/shears-worker"), "--server", Dial(i), "--threads", "1", "--work-dir",
                                 (dir_ / absl::StrCat("work-", i)).string(), "--poll-wait", "1s", "--worker-id",
                                 absl::StrCat("w", i)},
        (dir_ / absl::StrCat("worker-", i, ".log")).string());
  }

  double Uniform(double low, double high) { return std::uniform_real_distribution<>(low, high)(rng_); }

  // The trial's fault, at a random moment of the jobs' run.
  void Inject() {
    if (fault_ != "kill-server-publishing") Sleep(replicas_ > 1 ? Uniform(0.2, 1.5) : Uniform(0.2, 2.5));
    open_at_fault_ = OpenJobs();
    if (fault_ == "kill-worker" || fault_ == "kill-worker-and-replica") {
      const int i = static_cast<int>(rng_() % workers_.size());
      workers_[i]->Stop(SIGKILL);
      if (fault_ == "kill-worker-and-replica") RestartReplicas(1, SIGKILL);
      Sleep(Uniform(0.0, 3.0));
      StartWorker(i);
    } else if (fault_ == "kill-replica" || fault_ == "kill-two-replicas" || fault_ == "drain-replica") {
      RestartReplicas(fault_ == "kill-two-replicas" ? 2 : 1, fault_ == "drain-replica" ? SIGTERM : SIGKILL);
    } else if (fault_ == "restart-postgres") {
      const auto restarted = testing::RunCommand(
          {std::string(SHEARS_SOURCE_DIR) + "/scripts/test-postgres.sh", "restart",
           std::string(SHEARS_BINARY_DIR) + "/postgres"},
          (dir_ / "postgres-restart.log").string());
      if (restarted.status != 0) violations_.push_back("PostgreSQL did not restart: " + restarted.out);
    } else if (fault_ == "kill-server" || fault_ == "restart-server") {
      servers_[0]->Stop(fault_ == "kill-server" ? SIGKILL : SIGTERM);
      Sleep(Uniform(0.0, 5.0));  // up to two and a half lease TTLs
      StartServer(0);
    } else if (fault_ == "kill-server-publishing") {
      // As a job publishes: its fence, its manifest and its outcome meet a dead server.
      const auto until = Clock::now() + std::chrono::seconds(30);
      while (Clock::now() < until && !AnyPublishing()) Sleep(0.005);
      servers_[0]->Stop(SIGKILL);
      Sleep(Uniform(0.0, 5.0));
      StartServer(0);
    } else if (fault_ == "fill-store") {
      // Reports and outcomes meet a full store for a while; then the operator gives it room.
      Sleep(Uniform(0.0, 3.0));
      servers_[0]->Stop(SIGTERM);
      StartServer(0);
    } else if (fault_ == "kill-s3") {
      s3_->Stop();
      Sleep(Uniform(0.0, 4.0));
      s3_->Start(s3_->port());
    }
  }

  // Stops `count` random replicas with `signal`, and starts them again after up to 5 s.
  void RestartReplicas(int count, int signal) {
    std::vector<int> order(replicas_);
    for (int i = 0; i < replicas_; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng_);
    for (int k = 0; k < count; ++k) servers_[order[k]]->Stop(signal);
    Sleep(Uniform(0.0, 5.0));
    for (int k = 0; k < count; ++k) StartServer(order[k]);
  }

  // Jobs queued or running now.
  int OpenJobs() {
    int open = 0;
    for (const auto& id : jobs_) {
      auto job = GetJob(id);
      open += job.ok() && (job->state() == v1::JOB_STATE_QUEUED || job->state() == v1::JOB_STATE_RUNNING);
    }
    return open;
  }

  // A job about to publish (its last blocks pruned; publishing itself takes milliseconds here), or
  // none left to wait for.
  bool AnyPublishing() {
    bool open = false;
    for (const auto& id : jobs_) {
      auto job = GetJob(id);
      if (!job.ok()) continue;
      if (job->state() == v1::JOB_STATE_RUNNING && job->progress().fraction() >= 0.75) return true;
      open |= job->state() == v1::JOB_STATE_QUEUED || job->state() == v1::JOB_STATE_RUNNING;
    }
    return !open;
  }

  absl::StatusOr<v1::Job> GetJob(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job job;
    grpc::Status st = pruning_->GetJob(&context, request, &job);
    if (!st.ok()) return absl::UnavailableError(st.error_message());
    return job;
  }

  bool WaitForTheEnd(std::chrono::seconds limit) {
    const auto until = Clock::now() + limit;
    while (Clock::now() < until) {
      int ended = 0;
      for (const auto& id : jobs_) {
        auto job = GetJob(id);
        ended += job.ok() && (job->state() == v1::JOB_STATE_SUCCEEDED || job->state() == v1::JOB_STATE_FAILED ||
                              job->state() == v1::JOB_STATE_CANCELLED);
      }
      if (ended == jobs()) return true;
      Sleep(0.2);
    }
    return false;
  }

  std::vector<v1::JobEvent> Events(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::WatchJobRequest request;
    request.set_job_id(id);
    auto reader = pruning_->WatchJob(&context, request);
    std::vector<v1::JobEvent> events;
    v1::JobEvent event;
    while (reader->Read(&event)) events.push_back(event);
    reader->Finish();
    return events;
  }

  void Violation(const std::string& job, const std::string& what) {
    violations_.push_back(absl::StrCat("job ", job, ": ", what));
  }

  void Check() {
    worker::StorageOptions storage;
    storage.cache_dir = (dir_ / "reader").string();
    std::map<std::string, int> ended;
    for (size_t i = 0; i < jobs_.size(); ++i) {
      const std::string& id = jobs_[i];
      auto job = GetJob(id);
      if (!job.ok()) {
        Violation(id, absl::StrCat("GetJob: ", job.status().message()));
        continue;
      }
      ++ended[v1::JobState_Name(job->state()).substr(strlen("JOB_STATE_"))];
      // Ended exactly once, without a gap, nothing lost.
      const auto events = Events(id);
      int terminal = 0;
      for (size_t e = 0; e < events.size(); ++e) {
        if (events[e].sequence() != static_cast<int64_t>(e) + 1) {
          Violation(id, absl::StrCat("event ", e + 1, " has sequence ", events[e].sequence()));
          break;
        }
        if (events[e].has_report_gap()) {
          Violation(id, absl::StrCat("report batches ", events[e].report_gap().first_batch(), "-",
                                     events[e].report_gap().last_batch(), " were lost"));
        }
        if (events[e].has_state_change()) {
          const auto state = events[e].state_change().state();
          if (state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED) {
            ++terminal;
            if (e + 1 != events.size()) Violation(id, "events after its end");
          }
        }
      }
      if (terminal != 1) Violation(id, absl::StrCat("ended ", terminal, " times"));
      // No attempt burned by a restart alone.
      if (fault_.find("worker") == std::string::npos && job->attempt_count() != 1) {
        Violation(id, absl::StrCat("ran ", job->attempt_count(), " attempts with no worker killed (",
                                   job->state() == v1::JOB_STATE_FAILED ? job->error() : "", ")"));
      }
      // The output: vouched for when it succeeded, never otherwise.
      auto store = worker::FileSystemFor(outputs_[i], storage);
      if (!store.ok()) {
        Violation(id, absl::StrCat("output: ", store.status().message()));
        continue;
      }
      const std::string manifest_uri = outputs_[i] + "/manifest.json";
      auto info = (*store)->Stat(manifest_uri);
      if (job->state() != v1::JOB_STATE_SUCCEEDED) {
        if (info.ok()) Violation(id, absl::StrCat(v1::JobState_Name(job->state()), " but its output has a manifest"));
        continue;
      }
      if (!info.ok()) {
        Violation(id, absl::StrCat("SUCCEEDED without a manifest: ", info.status().message()));
        continue;
      }
      auto text = (*store)->ReadRange(manifest_uri, 0, info->size);
      auto manifest = nlohmann::json::parse(text.value_or(""), nullptr, false);
      if (manifest.is_discarded() || manifest["job_id"] != id) {
        Violation(id, "its manifest is not its own");
        continue;
      }
      for (const auto& file : manifest["files"]) {
        const std::string uri = outputs_[i] + "/" + file["name"].get<std::string>();
        auto file_info = (*store)->Stat(uri);
        auto bytes = file_info.ok() ? (*store)->ReadRange(uri, 0, file_info->size) : file_info.status();
        if (!bytes.ok() || static_cast<int64_t>(bytes->size()) != file["size_bytes"].get<int64_t>() ||
            Sha256Hex(*bytes) != file["sha256"].get<std::string>()) {
          Violation(id, absl::StrCat(file["name"].get<std::string>(), " does not match the manifest"));
        }
      }
    }
    for (const auto& [state, count] : ended) {
      absl::StrAppend(&outcomes_, outcomes_.empty() ? "" : ", ", count, " ", state);
    }
  }

  const int number_;
  std::string outcomes_;
  const std::string fault_;
  std::mt19937_64& rng_;
  const std::string model_;
  fs::path dir_;
  const int replicas_;
  int open_at_fault_ = 0;
  std::string store_;  // the replicas' database
  std::vector<std::string> addresses_, ports_;
  std::vector<std::unique_ptr<Process>> servers_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::unique_ptr<testing::S3Peer> s3_;
  std::unique_ptr<v1::Pruning::Stub> pruning_;
  std::vector<std::string> jobs_, outputs_;
  std::vector<std::string> violations_;
};

int Main(int argc, char** argv) {
  int trials = 50;
  int replicas = 1;
  std::string only;  // --fault: every trial injects this one
  uint64_t seed = std::random_device{}();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--trials") trials = std::stoi(argv[i + 1]);
    if (flag == "--seed") seed = std::stoull(argv[i + 1]);
    if (flag == "--replicas") replicas = std::max(1, std::stoi(argv[i + 1]));
    if (flag == "--fault") only = argv[i + 1];
  }
  std::cout << "shears-chaos: " << trials << " trials, " << replicas << " server replica(s)"
            << (replicas > 1 ? " on PostgreSQL" : "") << ", seed " << seed << " (--seed reproduces the choices)"
            << std::endl;
  std::mt19937_64 rng(seed);
  // A model with enough blocks that a fault lands mid-job.
  const fs::path model = fs::temp_directory_path() / absl::StrCat("shears-chaos-model-", getpid());
  // Replicas' trials run three jobs at once on three workers: a larger model keeps them running
  // into the fault.
  auto made = testing::RunCommand({Binary("tools/shears-synthetic-model"), "--blocks", replicas > 1 ? "24" : "12",
                                   "--hidden", replicas > 1 ? "256" : "128", "--ffn", replicas > 1 ? "704" : "352",
                                   model.string()},
                                  model.string() + ".log");
  if (made.status != 0) {
    std::cerr << "shears-chaos: could not write the model: " << made.out << std::endl;
    return 2;
  }
  const auto start = Clock::now();
  int jobs = 0, violations = 0, open_at_fault = 0;
  for (int t = 0; t < trials; ++t) {
    const std::string fault = !only.empty() ? only
                              : replicas > 1 ? kReplicaFaults[t % std::size(kReplicaFaults)]
                                             : kFaults[t % std::size(kFaults)];
    const auto trial_start = Clock::now();
    Trial trial(t, fault, rng, model.string(), replicas);
    const auto found = trial.Run();
    jobs += trial.jobs();
    violations += static_cast<int>(found.size());
    open_at_fault += trial.open_at_fault();
    std::cout << "trial " << t << " (" << fault << "): " << trial.jobs() << " jobs (" << trial.outcomes() << "; "
              << trial.open_at_fault() << " not ended at the fault), "
              << found.size() << " violations, "
              << std::chrono::duration<double>(Clock::now() - trial_start).count() << " s" << std::endl;
    for (const auto& v : found) std::cout << "  " << v << std::endl;
  }
  std::error_code ec;
  fs::remove_all(model, ec);
  std::cout << "(" << std::chrono::duration<double>(Clock::now() - start).count() << " s in all)" << std::endl;
  std::cout << "chaos: " << trials << " trials, " << jobs << " jobs (" << open_at_fault
            << " not ended when their trial's fault came), " << violations << " invariant violations" << std::endl;
  return violations > 0 ? 1 : 0;
}

}  // namespace
}  // namespace shears::chaos

int main(int argc, char** argv) { return shears::chaos::Main(argc, argv); }
