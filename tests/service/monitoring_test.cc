// The operators' view: a real Prometheus (Debian's package) scrapes shears-server and
// shears-worker on loopback while jobs run, and every PromQL expression of the Grafana dashboard
// in deploy/ is evaluated through Prometheus's HTTP API.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/files.h"
#include "shears/v1/pruning.grpc.pb.h"
#include "tests/support/http_peer.h"
#include "tests/support/process.h"
#include "tests/support/s3_peer.h"
#include "tests/support/test_util.h"
#include "worker/storage/http_client.h"

namespace shears {
namespace {

namespace fs = std::filesystem;
using testing::Binary;
using testing::DataDir;
using testing::Process;
using testing::TempDir;

constexpr char kPrometheus[] = "/usr/bin/prometheus";
// The dashboard's Grafana variables, as Grafana would fill them for a short range.
constexpr char kRateInterval[] = "1m";

// A loopback port free a moment ago, for Prometheus, which cannot report a port it picked itself.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrCat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// Every PromQL expression in the dashboard, panels inside rows included.
std::vector<std::string> DashboardExpressions(const nlohmann::json& dashboard) {
  std::vector<std::string> exprs;
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& panels) {
    for (const auto& panel : panels) {
      for (const auto& target : panel.value("targets", nlohmann::json::array())) exprs.push_back(target["expr"]);
      if (panel.contains("panels")) walk(panel["panels"]);
    }
  };
  walk(dashboard["panels"]);
  return exprs;
}

class MonitoringTest : public ::testing::Test {
 protected:
  // An instant query; the "result" array of a successful answer.
  nlohmann::json Query(const std::string& promql) {
    worker::HttpRequest request;
    request.url = absl::StrCat(prometheus_url_, "/api/v1/query?query=", UrlEncode(promql));
    auto response = http_.Send(request);
    if (!response.ok()) {
      ADD_FAILURE() << promql << ": " << response.status();
      return nlohmann::json::array();
    }
    auto answer = nlohmann::json::parse(response->body);
    EXPECT_EQ(answer["status"], "success") << promql << ": " << response->body;
    return answer["data"]["result"];
  }

  // The value of a one-series query, NaN when there is no series.
  double Scalar(const std::string& promql) {
    auto result = Query(promql);
    return result.size() == 1 ? std::stod(result[0]["value"][1].get<std::string>()) : std::nan("");
  }

  // Waits until `promql` returns one series of value `value`: Prometheus has scraped that far.
  bool WaitFor(const std::string& promql, double value) {
    for (int i = 0; i < 600; ++i) {
      if (Scalar(promql) == value) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  v1::Job RunToEnd(const v1::JobSpec& spec) {
    v1::CreateJobRequest request;
    *request.mutable_spec() = spec;
    v1::Job job;
    grpc::ClientContext create;
    create.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    EXPECT_TRUE(pruning_->CreateJob(&create, request, &job).ok());
    grpc::ClientContext watch;
    watch.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
    v1::WatchJobRequest watch_request;
    watch_request.set_job_id(job.id());
    auto reader = pruning_->WatchJob(&watch, watch_request);
    for (v1::JobEvent event; reader->Read(&event);) {
    }
    EXPECT_TRUE(reader->Finish().ok());
    grpc::ClientContext get;
    get.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::GetJobRequest get_request;
    get_request.set_job_id(job.id());
    EXPECT_TRUE(pruning_->GetJob(&get, get_request, &job).ok());
    return job;
  }

  TempDir dir_;
  worker::HttpClient http_;
  std::string prometheus_url_;
  std::unique_ptr<v1::Pruning::Stub> pruning_;
};

TEST_F(MonitoringTest, PrometheusScrapesBothProcessesAndEveryDashboardQueryReturnsData) {
  // The model comes from a Hub mirror and the output goes to S3, so the worker moves bytes both ways.
  const fs::path repo = dir_ / "hub/org/tiny/resolve/main";
  fs::create_directories(repo);
  for (const char* name : {"config.json", "model.safetensors", "tokenizer.json"}) {
    fs::copy_file(fs::path(DataDir("tiny-llama")) / name, repo / name);
  }
  const int64_t model_bytes = static_cast<int64_t>(fs::file_size(repo / "model.safetensors"));
  testing::HttpPeer hub(dir_ / "hub", dir_.path());
  testing::S3Peer s3(dir_.path());
  ASSERT_NE(s3.port(), 0);

  auto server = testing::StartServer(
      dir_.path(), {"--metrics-listen", "127.0.0.1:0", "--metrics-port-file", dir_ / "server.metrics-port"});
  ASSERT_FALSE(server.address.empty()) << server.process->Log();
  pruning_ = v1::Pruning::NewStub(grpc::CreateChannel(server.address, grpc::InsecureChannelCredentials()));
  setenv("HF_ENDPOINT", hub.url().c_str(), 1);
  Process worker({Binary("worker/shears-worker"), "--server", server.address, "--threads", "2", "--work-dir",
                  dir_ / "work", "--poll-wait", "2s", "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                  dir_ / "worker.metrics-port"},
                 dir_ / "worker.log");
  unsetenv("HF_ENDPOINT");
  const std::string server_port = testing::WaitForFile(dir_ / "server.metrics-port", std::chrono::seconds(30));
  const std::string worker_port = testing::WaitForFile(dir_ / "worker.metrics-port", std::chrono::seconds(30));
  ASSERT_FALSE(server_port.empty());
  ASSERT_FALSE(worker_port.empty()) << worker.Log();

  const int port = FreePort();
  prometheus_url_ = absl::StrCat("http://127.0.0.1:", port);
  ASSERT_TRUE(WriteFileAtomically(dir_ / "prometheus.yml",
                                  absl::StrCat("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                               "scrape_configs:\n"
                                               "  - job_name: shears-server\n    static_configs:\n"
                                               "      - targets: ['127.0.0.1:",
                                               server_port.substr(0, server_port.find('\n')),
                                               "']\n"
                                               "  - job_name: shears-worker\n    static_configs:\n"
                                               "      - targets: ['127.0.0.1:",
                                               worker_port.substr(0, worker_port.find('\n')), "']\n"))
                  .ok());
  Process prometheus({kPrometheus, "--config.file=" + (dir_ / "prometheus.yml"),
                      "--storage.tsdb.path=" + (dir_ / "tsdb"), absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                     dir_ / "prometheus.log");
  // Both targets up, and at least one scrape of every series before any job changes it, so that
  // rates and quantiles see the jobs' increases.
  ASSERT_TRUE(WaitFor("count(up == 1)", 2)) << prometheus.Log();
  ASSERT_TRUE(WaitFor("count(shears_worker_busy == 0)", 1));

  v1::JobSpec spec;
  spec.set_model_uri("hf://org/tiny");
  spec.set_method(v1::METHOD_WANDA);
  spec.set_target_sparsity(0.5);
  spec.mutable_calibration()->set_dataset_uri("file://" + testing::KjvSplitsDir() + "/train.txt");
  spec.mutable_calibration()->set_num_samples(16);
  spec.mutable_calibration()->set_seq_len(64);
  spec.mutable_evaluation()->set_dataset_uri("file://" + testing::KjvSplitsDir() + "/test.txt");
  spec.mutable_evaluation()->set_seq_len(64);
  spec.mutable_evaluation()->set_max_tokens(4096);
  spec.mutable_output()->set_uri("s3://models/pruned/tiny-wanda-50");
  v1::Job done = RunToEnd(spec);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  v1::JobSpec broken = spec;
  broken.set_model_uri("file://" + (dir_ / "no-such-model"));
  broken.set_method(v1::METHOD_MAGNITUDE);
  broken.clear_calibration();
  ASSERT_EQ(RunToEnd(broken).state(), v1::JOB_STATE_FAILED);
  {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_job_id("no-such-job");
    v1::Job ignored;
    EXPECT_EQ(pruning_->GetJob(&context, request, &ignored).error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // What the processes counted, as Prometheus scraped it.
  ASSERT_TRUE(WaitFor(R"(sum(shears_jobs{state="failed"}))", 1)) << "the server's view reached Prometheus";
  ASSERT_TRUE(WaitFor(R"(sum(shears_worker_jobs_total{outcome="failed"}))", 1)) << "the worker's view too";
  std::this_thread::sleep_for(std::chrono::seconds(3));  // a few samples after the last change
  EXPECT_EQ(Scalar(R"(shears_jobs{state="succeeded"})"), 1);
  EXPECT_EQ(Scalar(R"(shears_jobs_created_total{method="wanda"})"), 1);
  EXPECT_EQ(Scalar(R"(shears_jobs_finished_total{method="wanda",outcome="succeeded"})"), 1);
  EXPECT_EQ(Scalar(R"(shears_jobs_finished_total{method="magnitude",outcome="failed"})"), 1);
  EXPECT_EQ(Scalar(R"(shears_job_run_seconds_count{method="wanda",outcome="succeeded"})"), 1);
  EXPECT_EQ(Scalar(R"(shears_grpc_requests_total{service="shears.v1.Pruning",method="GetJob",code="NOT_FOUND"})"),
            1);
  EXPECT_EQ(Scalar(R"(shears_workers{state="idle"})"), 1) << "the worker is back in its long poll";
  EXPECT_EQ(Scalar(R"(shears_worker_blocks_pruned_total)"), 2) << "the fixture's two blocks";
  // Both jobs began downloading; only the one that succeeded went on.
  for (const auto& [stage, times] : std::vector<std::pair<std::string, int>>{
           {"download", 2}, {"calibrate", 1}, {"prune", 1}, {"evaluate", 1}, {"upload", 1}}) {
    EXPECT_EQ(Scalar(absl::StrCat(R"(shears_worker_stage_duration_seconds_count{stage=")", stage, R"("})")), times)
        << stage;
  }
  int64_t published = 0;
  for (const auto& artifact : done.result().artifacts()) published += artifact.size_bytes();
  EXPECT_GE(Scalar("shears_worker_downloaded_bytes_total"), double(model_bytes));
  EXPECT_GE(Scalar("shears_worker_uploaded_bytes_total"), double(published));
  EXPECT_GT(Scalar("shears_worker_peak_device_memory_bytes"), 50e6) << "the worker's resident set while pruning";

  // No label carries a job id or a URI: their values would grow without bound.
  for (const auto& series : Query(R"({__name__=~"shears_.+"})")) {
    for (const auto& [label, value] : series["metric"].items()) {
      const std::string v = value.get<std::string>();
      EXPECT_EQ(v.find(done.id()), std::string::npos) << label << "=" << v;
      EXPECT_EQ(v.find("://"), std::string::npos) << label << "=" << v;
    }
  }

  auto dashboard = nlohmann::json::parse(
      ReadFile(std::string(SHEARS_SOURCE_DIR) + "/deploy/monitoring/grafana/dashboards/shears.json").value());
  const auto exprs = DashboardExpressions(dashboard);
  ASSERT_GE(exprs.size(), 15u);
  for (const auto& expr : exprs) {
    const std::string promql = absl::StrReplaceAll(expr, {{"$__rate_interval", kRateInterval}});
    auto result = Query(promql);
    std::string values;
    int finite = 0;
    for (const auto& series : result) {
      const std::string value = series["value"][1];
      absl::StrAppend(&values, " ", series["metric"].dump(), "=", value);
      finite += std::isfinite(std::stod(value));
    }
    std::cout << promql << " ->" << values << "\n";
    EXPECT_GT(finite, 0) << promql << " returned no number:" << values;
  }
  EXPECT_EQ(prometheus.Stop(), 0);
}

}  // namespace
}  // namespace shears
