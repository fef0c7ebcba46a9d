// shears-server and shears-worker as processes on loopback ports, driven over gRPC as a client
// platform would drive them.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <thread>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "common/channel.h"
#include "common/files.h"
#include "common/job_spec.h"
#include "common/sha256.h"
#include "shears/v1/attempt.pb.h"
#include "shears/v1/pruning.grpc.pb.h"
#include "shears/v1/workers.grpc.pb.h"
#include "tests/support/health_check.h"
#include "tests/support/http_peer.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/s3_peer.h"
#include "tests/support/test_identities.h"
#include "tests/support/test_util.h"
#include "worker/engine/io/model_dir.h"
#include "worker/storage/filesystem_factory.h"

namespace shears {
namespace {

namespace fs = std::filesystem;
using testing::Binary;
using testing::DataDir;
using testing::HealthCheck;
using testing::kNotServing;
using testing::kServing;
using testing::Process;
using testing::TempDir;
using testing::ToString;

constexpr auto kStartTimeout = std::chrono::seconds(30);

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer("30s"); }

  // As deployed: TLS, identities (this test calls as alice, a client of team-a, and as the worker),
  // and the plaintext health port.
  // `port` 0: any free one.
  void StartServer(const std::string& lease_ttl, int port = 0, const std::vector<std::string>& extra = {}) {
    unlink((dir_ / "health.port").c_str());
    std::vector<std::string> flags = {"--lease-ttl", lease_ttl, "--max-attempts", "3", "--health-listen",
                                      "127.0.0.1:0", "--health-port-file", dir_ / "health.port",
                                      "--listen", absl::StrCat("127.0.0.1:", port)};
    flags.insert(flags.end(), extra.begin(), extra.end());
    secure_ = testing::StartSecureServer(dir_.path(), flags);
    ASSERT_TRUE(secure_.error.empty()) << secure_.error;
    server_ = std::move(secure_.server.process);
    address_ = secure_.server.address;
    const std::string health_port = testing::WaitForFile(dir_ / "health.port", kStartTimeout);
    health_address_ = "127.0.0.1:" + health_port.substr(0, health_port.find('\n'));
    ChannelOptions options;
    options.target = address_;
    options.tls_ca_file = secure_.certs.ca;
    channel_ = OpenChannel(options).value();
    pruning_ = v1::Pruning::NewStub(channel_);
    workers_ = v1::Workers::NewStub(channel_);
  }

  void StartWorker(const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {Binary("worker/shears-worker"), "--server", address_, "--tls-ca", secure_.certs.ca,
                                     "--token-file", secure_.worker_token, "--threads", "2",
                                     "--work-dir", dir_ / "work", "--poll-wait", "2s", "--worker-id", "test-worker"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    worker_ = std::make_unique<Process>(argv, dir_ / "worker.log");
  }

  // The job failed after the storage retries, and once the store is back nothing under `output`
  // vouches for data: no manifest, no weights.
  void ExpectFailedWithoutManifest(const std::string& job_id, testing::S3Peer& s3, const std::string& output) {
    Watch(job_id);
    v1::Job done = Get(job_id);
    EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
    EXPECT_NE(done.error().find("failed after 5 attempts"), std::string::npos) << done.error();
    s3.Restart();
    worker::StorageOptions options;
    options.cache_dir = dir_ / "reader";
    auto store = worker::FileSystemFor(output, options);
    EXPECT_EQ((*store)->Stat(output + "/manifest.json").status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ((*store)->Stat(output + "/model.safetensors").status().code(), absl::StatusCode::kNotFound)
        << "a multipart upload is aborted, not completed";
  }

  // A call as `token`'s identity.
  std::unique_ptr<grpc::ClientContext> Context(int seconds = 30, const char* token = testing::kAliceToken) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
    AddToken(*c, token);
    return c;
  }

  v1::JobSpec Spec(const std::string& model, const std::string& out, double sparsity = 0.5) {
    v1::JobSpec spec;
    spec.set_model_uri("file://" + model);
    spec.set_method(v1::METHOD_MAGNITUDE);
    spec.set_target_sparsity(sparsity);
    spec.mutable_output()->set_uri("file://" + out);
    return spec;
  }

  static void SetNM(v1::JobSpec& spec, int n, int m) {
    spec.set_target_sparsity(0);
    spec.set_structure(v1::STRUCTURE_N_M);
    spec.mutable_n_m()->set_n(n);
    spec.mutable_n_m()->set_m(m);
  }

  void SetCalibration(v1::JobSpec& spec, int samples, int seq_len) {
    auto* calibration = spec.mutable_calibration();
    calibration->set_dataset_uri("file://" + testing::KjvSplitsDir() + "/train.txt");
    calibration->set_num_samples(samples);
    calibration->set_seq_len(seq_len);
  }

  void SetFineTune(v1::JobSpec& spec, int steps) {
    auto* tune = spec.mutable_fine_tune();
    tune->set_dataset_uri("file://" + testing::KjvSplitsDir() + "/train.txt");
    tune->set_steps(steps);
    tune->set_seq_len(64);
  }

  grpc::Status Create(const v1::JobSpec& spec, v1::Job* job, const std::string& request_id = "") {
    v1::CreateJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    return pruning_->CreateJob(Context().get(), request, job);
  }

  // Every event of the job from after_sequence until the stream ends; `on_event` sees each as it comes.
  std::vector<v1::JobEvent> Watch(const std::string& id, int64_t after = 0,
                                  const std::function<void(const v1::JobEvent&)>& on_event = nullptr) {
    v1::WatchJobRequest request;
    request.set_job_id(id);
    request.set_after_sequence(after);
    auto context = Context(120);
    auto reader = pruning_->WatchJob(context.get(), request);
    std::vector<v1::JobEvent> events;
    v1::JobEvent event;
    while (reader->Read(&event)) {
      events.push_back(event);
      if (on_event) on_event(event);
    }
    grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return events;
  }

  v1::Job Get(const std::string& id) {
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job job;
    grpc::Status st = pruning_->GetJob(Context().get(), request, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return job;
  }

  // The layer events of a job's log, which must have no gap: sequences 1, 2, ... and no report
  // batch lost on the way.
  static int LayerEventsOfAGaplessLog(const std::vector<v1::JobEvent>& events) {
    int layers = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i) + 1);
      EXPECT_FALSE(events[i].has_report_gap()) << "report batches lost";
      layers += events[i].has_layer();
    }
    return layers;
  }

  int JobCount() {
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    v1::ListJobsResponse response;
    EXPECT_TRUE(pruning_->ListJobs(Context().get(), request, &response).ok());
    return response.jobs_size();
  }

  TempDir dir_;
  std::string address_;
  std::unique_ptr<Process> server_;
  std::unique_ptr<Process> worker_;
  std::unique_ptr<v1::Pruning::Stub> pruning_;
  std::unique_ptr<v1::Workers::Stub> workers_;
  testing::SecureServer secure_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string health_address_;
};

TEST_F(ServiceTest, MagnitudeJobRunsToSucceededAndPublishesThePrunedModel) {
  StartWorker();
  const std::string model = DataDir("tiny-llama");
  const std::string out = dir_ / "out";
  v1::Job job;
  ASSERT_TRUE(Create(Spec(model, out), &job, "req-e2e").ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  v1::Job again;
  ASSERT_TRUE(Create(Spec(model, out), &again, "req-e2e").ok());
  EXPECT_EQ(again.id(), job.id()) << "same request_id, same job";

  auto events = Watch(job.id());
  ASSERT_FALSE(events.empty());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
  ASSERT_TRUE(events.back().has_state_change());
  EXPECT_EQ(events.back().state_change().state(), v1::JOB_STATE_SUCCEEDED) << Get(job.id()).error();
  int layer_events = 0;
  for (const auto& e : events) layer_events += e.has_layer();
  EXPECT_EQ(layer_events, 14);
  // One progress event a block with its pace, and the estimate of the rest.
  std::vector<int> blocks_done;
  for (const auto& e : events) {
    if (!e.has_progress() || e.progress().blocks() == 0) continue;
    blocks_done.push_back(e.progress().blocks_done());
    EXPECT_EQ(e.progress().blocks(), 2);
    EXPECT_TRUE(e.progress().has_seconds_left());
    EXPECT_NEAR(e.progress().seconds_left(), e.progress().seconds_per_block() * (2 - e.progress().blocks_done()), 1e-9);
    EXPECT_GT(e.progress().stage_times_size(), 0);
  }
  EXPECT_EQ(blocks_done, (std::vector<int>{1, 2}));

  v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.attempt_count(), 1);
  EXPECT_EQ(done.progress().fraction(), 1.0);
  const auto& result = done.result();
  EXPECT_NEAR(result.achieved_sparsity(), 0.5, 1e-3);
  EXPECT_EQ(result.layers_size(), 14);
  EXPECT_EQ(result.parameters_before(), 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 176 * 64));
  EXPECT_NEAR(result.parameters_after(), result.parameters_before() / 2, 14);
  testing::ExpectMagnitudePruned(model, out, 0.5);
  // Where the time went: the worker's download and publish around the engine's stages.
  std::vector<std::string> stages;
  for (const auto& t : result.stage_times()) stages.push_back(t.stage());
  EXPECT_EQ(stages, (std::vector<std::string>{"download", "load", "prune", "write", "publish"}));

  // Every artifact is on disk with the size and digest the result claims.
  std::set<std::string> names;
  for (const auto& a : result.artifacts()) {
    const std::string path = a.uri().substr(strlen("file://"));
    names.insert(fs::path(path).filename().string());
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(path)), a.size_bytes()) << a.uri();
    EXPECT_EQ(Sha256File(path).value(), a.sha256()) << a.uri();
  }
  EXPECT_EQ(names, (std::set<std::string>{"model.safetensors", "config.json", "tokenizer.json", "shears_report.json",
                                          "manifest.json"}));
  v1::JobResult report;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(ReadFile(out + "/shears_report.json").value(), &report).ok());
  EXPECT_EQ(report.layers_size(), 14);
  EXPECT_EQ(report.achieved_sparsity(), result.achieved_sparsity());

  // A replay from the middle sends only what came after.
  auto tail = Watch(job.id(), 3);
  ASSERT_EQ(tail.size(), events.size() - 3);
  EXPECT_EQ(tail.front().sequence(), 4);
}

TEST_F(ServiceTest, CalibratedTwoFourJobStreamsReconstructionErrorsAndPublishesCompressedTensors) {
  StartWorker();
  const std::string out = dir_ / "out";
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), out);
  spec.set_method(v1::METHOD_SPARSEGPT);
  SetNM(spec, 2, 4);
  SetCalibration(spec, 16, 64);
  spec.mutable_output()->set_format(v1::OUTPUT_FORMAT_SPARSE_24_BITMASK);
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  auto events = Watch(job.id());
  v1::Job done = Get(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  int layer_events = 0;
  for (const auto& e : events) {
    if (!e.has_layer()) continue;
    ++layer_events;
    EXPECT_EQ(e.layer().achieved_sparsity(), 0.5) << e.layer().name();
    ASSERT_TRUE(e.layer().has_reconstruction_error()) << e.layer().name();
    EXPECT_GT(e.layer().reconstruction_error(), 0.0);
    EXPECT_LT(e.layer().reconstruction_error(), 1.0);
  }
  EXPECT_EQ(layer_events, 14);
  EXPECT_EQ(done.result().layers_size(), 14);
  for (const auto& layer : done.result().layers()) EXPECT_TRUE(layer.has_reconstruction_error()) << layer.name();
  EXPECT_EQ(done.result().achieved_sparsity(), 0.5);
  EXPECT_EQ(done.result().redundancy_size(), 2);

  auto config = nlohmann::json::parse(ReadFile(out + "/config.json").value());
  EXPECT_EQ(config["quantization_config"]["sparsity_config"]["format"], "sparse-24-bitmask");
  for (const auto& a : done.result().artifacts()) {
    const std::string path = a.uri().substr(strlen("file://"));
    EXPECT_EQ(Sha256File(path).value(), a.sha256()) << a.uri();
  }
  auto model = engine::ModelDir::Open(out);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_NE((*model)->Find("model.layers.1.mlp.down_proj.bitmask"), nullptr);
  EXPECT_EQ((*model)->Find("model.layers.1.mlp.down_proj.weight"), nullptr);
}

TEST_F(ServiceTest, BlockInfluenceJobRemovesBlocksAndReportsTheirRedundancy) {
  StartWorker();
  const std::string out = dir_ / "out";
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), out);
  spec.set_method(v1::METHOD_BLOCK_INFLUENCE);
  spec.set_structure(v1::STRUCTURE_LAYERS);
  SetCalibration(spec, 8, 64);
  spec.set_neuron_measures(true);
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  auto events = Watch(job.id());
  v1::Job done = Get(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  std::vector<std::string> measured;
  for (const auto& e : events) {
    if (!e.has_redundancy()) continue;
    measured.push_back(e.redundancy().model());
    // Events carry the FFN summaries, not the per-neuron vectors.
    ASSERT_GT(e.redundancy().ffns_size(), 0);
    EXPECT_EQ(e.redundancy().ffns(0).max_cosine().values_size(), 0);
    EXPECT_GT(e.redundancy().ffns(0).sensitivity().max(), 0.0);
    EXPECT_GT(e.redundancy().ffns(0).effective_rank(), 1.0);
  }
  EXPECT_EQ(measured, (std::vector<std::string>{"dense", "pruned"}));
  const auto& result = done.result();
  ASSERT_EQ(result.removed_blocks_size(), 1);
  ASSERT_EQ(result.redundancy_size(), 2);
  ASSERT_EQ(result.redundancy(0).blocks_size(), 2);
  // The block removed is the one of lower influence.
  const int removed = result.removed_blocks(0);
  EXPECT_LE(result.redundancy(0).blocks(removed).block_influence(), result.redundancy(0).blocks(1 - removed).block_influence());
  EXPECT_EQ(result.redundancy(1).blocks_size(), 1);
  ASSERT_EQ(result.redundancy(0).ffns_size(), 2);
  // The answer carries summaries; every neuron's value is in the published report.
  EXPECT_EQ(result.redundancy(0).ffns(1).uniqueness().values_size(), 0);
  EXPECT_GT(result.redundancy(0).ffns(1).uniqueness().max(), 0.0);
  ASSERT_EQ(result.report_uri(), "file://" + out + "/shears_report.json");
  const auto report = nlohmann::json::parse(ReadFile(out + "/shears_report.json").value());
  EXPECT_EQ(report["redundancy"][0]["ffns"][1]["uniqueness"]["values"].size(), 176u);
  EXPECT_EQ(result.achieved_sparsity(), 0.5);
  EXPECT_EQ(result.model_parameters_before() - result.model_parameters_after(), result.parameters_before() / 2);
  auto config = nlohmann::json::parse(ReadFile(out + "/config.json").value());
  EXPECT_EQ(config["num_hidden_layers"], 1);
}

// At real widths the per-neuron values are megabytes (17 MB for Llama-2-7B's shape), more than
// gRPC's default 4 MiB: they go to the published report, and the job completes through the
// service with summaries. Here the FFNs of 13,312 neurons of 32 blocks (dense) and of the 16 that
// layer removal keeps make a full report of over 50 MB.
TEST_F(ServiceTest, AJobWhoseFullReportIsFiftyMegabytesCompletesThroughTheService) {
  StartWorker();
  const std::string model = dir_ / "wide";
  testing::WriteRandomModel(model,
                            {{"model_type", "llama"}, {"vocab_size", 2048}, {"hidden_size", 16},
                             {"intermediate_size", 13312}, {"num_hidden_layers", 32}, {"num_attention_heads", 2},
                             {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5}},
                            17);
  fs::copy_file(DataDir("tiny-llama") + "/tokenizer.json", model + "/tokenizer.json");
  const std::string out = dir_ / "wide-out";
  v1::JobSpec spec = Spec(model, out);
  spec.set_method(v1::METHOD_BLOCK_INFLUENCE);
  spec.set_structure(v1::STRUCTURE_LAYERS);
  SetCalibration(spec, 1, 64);
  spec.set_neuron_measures(true);
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  Watch(job.id());
  v1::Job done = Get(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.attempt_count(), 1) << "completed the first time";
  const auto& result = done.result();
  ASSERT_EQ(result.redundancy_size(), 2);
  ASSERT_EQ(result.redundancy(0).ffns_size(), 32);
  ASSERT_EQ(result.redundancy(1).ffns_size(), 16);
  EXPECT_EQ(result.redundancy(1).ffns(15).neurons(), 13312);
  EXPECT_LT(result.ByteSizeLong(), 1u << 20) << "summaries only";
  const auto size = fs::file_size(out + "/shears_report.json");
  EXPECT_GT(size, 50u * 1000 * 1000);
  const auto report = nlohmann::json::parse(ReadFile(out + "/shears_report.json").value());
  EXPECT_EQ(report["redundancy"][1]["ffns"][15]["max_cosine"]["values"].size(), 13312u);
  std::cout << "full report " << size << " bytes, the answer " << result.ByteSizeLong() << " bytes" << std::endl;
}

TEST_F(ServiceTest, JobsWhoseTargetOrDataDoNotFitTheModelFailSayingWhy) {
  StartWorker();
  v1::JobSpec indivisible = Spec(DataDir("tiny-llama"), dir_ / "a");
  SetNM(indivisible, 16, 32);
  v1::JobSpec scarce = Spec(DataDir("tiny-llama"), dir_ / "b");
  scarce.set_method(v1::METHOD_WANDA);
  SetCalibration(scarce, 60000, 128);
  const std::vector<std::pair<v1::JobSpec, std::string>> cases = {
      {indivisible, "n_m: M=32 does not divide the 176 inputs of model.layers.0.mlp.down_proj.weight"},
      {scarce, "fewer than the 60000 windows of 128 tokens asked for (7680000)"},
  };
  for (const auto& [spec, message] : cases) {
    v1::Job job;
    ASSERT_TRUE(Create(spec, &job).ok());
    Watch(job.id());
    v1::Job done = Get(job.id());
    EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
    EXPECT_NE(done.error().find(message), std::string::npos) << done.error();
  }
}

// An exception LibTorch throws in the middle of a search (its out-of-memory error, for a window
// of 32768 tokens under a worker's 12 MiB tensor memory limit) fails that job with the reason; the
// worker lives on and takes the next job, which fits.
TEST_F(ServiceTest, AnEngineErrorInTheSearchFailsTheJobAndTheWorkerTakesTheNext) {
  StartWorker({"--max-tensor-memory", std::to_string(12 << 20)});
  std::string ids;
  for (int i = 0; i < 300000; ++i) ids += std::string{static_cast<char>(i % 251), '\0'};
  ASSERT_TRUE(WriteFileAtomically(dir_ / "ids.bin", ids).ok());
  v1::JobSpec search = Spec(DataDir("tiny-llama"), dir_ / "searched");
  search.set_method(v1::METHOD_PREDICTOR_SEARCH);
  search.mutable_search()->set_base_method(v1::METHOD_WANDA);
  search.mutable_search()->set_measured_configurations(10);
  search.mutable_search()->set_search_budget(50);
  auto* calibration = search.mutable_calibration();
  calibration->set_dataset_uri("file://" + dir_ / "ids.bin");
  calibration->set_num_samples(1);
  calibration->set_seq_len(32768);
  v1::Job failing, next;
  ASSERT_TRUE(Create(search, &failing).ok());
  ASSERT_TRUE(Create(Spec(DataDir("tiny-gpt2"), dir_ / "next"), &next).ok());
  Watch(failing.id());
  v1::Job failed = Get(failing.id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error().rfind("engine: ", 0), 0u) << failed.error();
  EXPECT_NE(failed.error().find("would pass the worker's 12 MiB (--max-tensor-memory)"), std::string::npos) << failed.error();
  EXPECT_EQ(failed.attempt_count(), 1) << "failed by the worker, not requeued after a crash";
  Watch(next.id());
  EXPECT_EQ(Get(next.id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(fs::exists(dir_ / "next/manifest.json"));
}

TEST_F(ServiceTest, GumJobFineTunesWhilePruningAndStreamsItsProgress) {
  StartWorker();
  const std::string out = dir_ / "out";
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), out);
  spec.set_method(v1::METHOD_GUM);
  spec.set_target_sparsity(0.25);
  SetFineTune(spec, 10);
  SetCalibration(spec, 4, 64);
  spec.set_neuron_measures(true);
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  auto events = Watch(job.id());
  v1::Job done = Get(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.spec().structure(), v1::STRUCTURE_FFN_NEURONS) << "GUM's default structure";
  int fine_tuning = 0;
  for (const auto& e : events) fine_tuning += e.has_progress() && e.progress().stage() == "fine-tuning";
  EXPECT_GT(fine_tuning, 0);
  const auto& result = done.result();
  EXPECT_EQ(result.model_parameters_before() - result.model_parameters_after(), 88 * 3 * 64)
      << "a quarter of the 352 neurons, each with 3 x 64 weights";
  ASSERT_EQ(result.redundancy_size(), 2);
  ASSERT_EQ(result.redundancy(1).ffns_size(), 2);
  EXPECT_GT(result.redundancy(1).ffns(0).sensitivity().max(), 0.0);
}

TEST_F(ServiceTest, LowRankJobStoresFactorsTheWorkerEvaluates) {
  StartWorker();
  const std::string out = dir_ / "out";
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), out);
  spec.set_method(v1::METHOD_LOW_RANK);
  spec.set_target_sparsity(0.3);
  SetCalibration(spec, 8, 64);
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  Watch(job.id());
  v1::Job done = Get(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.spec().structure(), v1::STRUCTURE_RANK);
  EXPECT_NEAR(done.result().achieved_sparsity(), 0.3, 0.01);
  auto config = nlohmann::json::parse(ReadFile(out + "/config.json").value());
  EXPECT_FALSE(config["shears_low_rank"].empty());
}

TEST_F(ServiceTest, AJobReadsItsModelFromAHubMirror) {
  // A sharded copy of the fixture served in Hub layout; the worker fetches it by hf:// with
  // HF_ENDPOINT pointing at the mirror, prunes it and a second job finds it in the cache.
  const fs::path repo = dir_ / "hub/org/tiny/resolve/main";
  testing::RewriteModel(DataDir("tiny-llama"), repo, torch::kFloat32, /*shards=*/2);
  fs::copy_file(DataDir("tiny-llama") + "/tokenizer.json", repo / "tokenizer.json");
  testing::HttpPeer peer(dir_ / "hub", dir_.path());
  setenv("HF_ENDPOINT", peer.url().c_str(), 1);
  StartWorker();
  unsetenv("HF_ENDPOINT");
  for (int run = 0; run < 2; ++run) {
    const std::string out = dir_ / ("out" + std::to_string(run));
    v1::JobSpec spec = Spec(DataDir("tiny-llama"), out);
    spec.set_model_uri("hf://org/tiny");
    v1::Job job;
    ASSERT_TRUE(Create(spec, &job).ok());
    auto events = Watch(job.id());
    v1::Job done = Get(job.id());
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
    testing::ExpectMagnitudePruned(repo, out, 0.5);
    bool reported_bytes = false;
    for (const auto& e : events) {
      reported_bytes |= e.has_progress() && e.progress().message().find("model-00002-of-00002.safetensors: ") == 0;
    }
    EXPECT_EQ(reported_bytes, run == 0) << "download progress on the first run only";
  }
  int shard_gets = 0;
  for (const auto& r : peer.Requests()) shard_gets += r.find("model-00001-of-00002.safetensors") != std::string::npos;
  EXPECT_EQ(shard_gets, 1) << "the second job found the model in the worker's cache";
}

TEST_F(ServiceTest, TheManifestComesLastAndVouchesForEveryFile) {
  StartWorker();
  const std::string out = dir_ / "out";
  v1::Job job;
  ASSERT_TRUE(Create(Spec(DataDir("tiny-llama"), out), &job).ok());
  Watch(job.id());
  v1::Job done = Get(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  const auto& artifacts = done.result().artifacts();
  ASSERT_GT(artifacts.size(), 2);
  EXPECT_EQ(artifacts.rbegin()->uri(), "file://" + out + "/manifest.json") << "published last";
  auto manifest = nlohmann::json::parse(ReadFile(out + "/manifest.json").value());
  EXPECT_EQ(manifest["job_id"], job.id());
  EXPECT_EQ(manifest["spec"]["model_uri"], "file://" + DataDir("tiny-llama"));
  EXPECT_FALSE(manifest["engine_version"].get<std::string>().empty());
  ASSERT_EQ(manifest["files"].size(), static_cast<size_t>(artifacts.size() - 1)) << "every file but itself";
  for (const auto& f : manifest["files"]) {
    const std::string path = out + "/" + f["name"].get<std::string>();
    EXPECT_EQ(f["sha256"], Sha256File(path).value()) << path;
    EXPECT_EQ(f["size_bytes"].get<int64_t>(), static_cast<int64_t>(fs::file_size(path))) << path;
  }
}

TEST_F(ServiceTest, AJobReadsFromAHubMirrorAndPublishesToS3) {
  const fs::path repo = dir_ / "hub/org/tiny/resolve/main";
  testing::RewriteModel(DataDir("tiny-llama"), repo, torch::kFloat32, /*shards=*/2);
  fs::copy_file(DataDir("tiny-llama") + "/tokenizer.json", repo / "tokenizer.json");
  testing::HttpPeer hub(dir_ / "hub", dir_.path());
  testing::S3Peer s3(dir_.path());
  ASSERT_NE(s3.port(), 0);
  setenv("HF_ENDPOINT", hub.url().c_str(), 1);
  StartWorker();
  unsetenv("HF_ENDPOINT");
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), "/unused");
  spec.set_model_uri("hf://org/tiny");
  spec.mutable_output()->set_uri("s3://models/pruned/tiny-50");
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  Watch(job.id());
  v1::Job done = Get(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  // Every file the manifest lists, as the store holds it, has the manifest's size and sha256.
  worker::StorageOptions options;
  options.cache_dir = dir_ / "reader";
  auto store = worker::FileSystemFor("s3://models", options);
  ASSERT_TRUE(store.ok());
  auto local = (*store)->Localize("s3://models/pruned/tiny-50", {});
  ASSERT_TRUE(local.ok()) << local.status();
  auto manifest = nlohmann::json::parse(ReadFile(*local + "/manifest.json").value());
  EXPECT_EQ(manifest["job_id"], job.id());
  EXPECT_EQ(manifest["files"].size(), 6u) << "config, two shards, index, tokenizer, report";
  for (const auto& f : manifest["files"]) {
    const std::string path = *local + "/" + f["name"].get<std::string>();
    EXPECT_EQ(f["sha256"], Sha256File(path).value()) << path;
    EXPECT_EQ(f["size_bytes"].get<int64_t>(), static_cast<int64_t>(fs::file_size(path))) << path;
  }
  testing::ExpectMagnitudePruned(repo, *local, 0.5);
}

TEST_F(ServiceTest, AStoreThatDiesBeforePublishingFailsTheJobWithNoManifest) {
  testing::S3Peer s3(dir_.path());
  ASSERT_NE(s3.port(), 0);
  StartWorker();
  s3.Stop();
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), "/unused");
  spec.mutable_output()->set_uri("s3://models/pruned/gone");
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  ExpectFailedWithoutManifest(job.id(), s3, "s3://models/pruned/gone");
}

TEST_F(ServiceTest, AStoreKilledMidUploadFailsTheJobAfterRetriesWithNoManifest) {
  // Small parts make the weights a multipart upload of many parts; s3rver dies once the first
  // part is stored.
  testing::S3Peer s3(dir_.path());
  ASSERT_NE(s3.port(), 0);
  StartWorker({"--s3-part-bytes", "16384"});
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), "/unused");
  spec.mutable_output()->set_uri("s3://models/pruned/killed");
  v1::Job job;
  ASSERT_TRUE(Create(spec, &job).ok());
  for (int i = 0; i < 3000 && s3.Log().find("Stored part ") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_NE(s3.Log().find("Stored part "), std::string::npos) << s3.Log();
  s3.Stop();
  ExpectFailedWithoutManifest(job.id(), s3, "s3://models/pruned/killed");
}

TEST_F(ServiceTest, AFailedPublishLeavesNoManifestBesidePartialData) {
  // An earlier attempt's manifest is there; this attempt cannot write the weights (a directory
  // stands in the way), so the job fails and no manifest remains to vouch for what is there.
  StartWorker();
  const std::string out = dir_ / "out";
  fs::create_directories(out + "/model.safetensors");
  { std::ofstream(out + "/manifest.json") << "{\"stale\": true}"; }
  v1::Job job;
  ASSERT_TRUE(Create(Spec(DataDir("tiny-llama"), out), &job).ok());
  Watch(job.id());
  v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(done.error().find("model.safetensors"), std::string::npos) << done.error();
  EXPECT_FALSE(fs::exists(out + "/manifest.json"));
}

TEST(FileRootsAtCreateJob, APathOutsideTheAllowedRootsIsPermissionDenied) {
  TempDir dir;
  fs::create_directories(dir / "allowed");
  auto server = testing::StartServer(dir.path(), {"--allow-file-root", dir / "allowed"});
  ASSERT_FALSE(server.address.empty()) << server.process->Log();
  auto stub = v1::Pruning::NewStub(grpc::CreateChannel(server.address, grpc::InsecureChannelCredentials()));
  auto create = [&](const std::string& model, const std::string& out) {
    v1::CreateJobRequest request;
    request.mutable_spec()->set_model_uri("file://" + model);
    request.mutable_spec()->set_method(v1::METHOD_MAGNITUDE);
    request.mutable_spec()->set_target_sparsity(0.5);
    request.mutable_spec()->mutable_output()->set_uri("file://" + out);
    grpc::ClientContext context;
    v1::Job job;
    return stub->CreateJob(&context, request, &job);
  };
  EXPECT_TRUE(create(dir / "allowed/model", dir / "allowed/out").ok());
  auto outside = create(DataDir("tiny-llama"), dir / "allowed/out2");
  EXPECT_EQ(outside.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(outside.error_message().rfind("spec.model_uri: ", 0), 0u) << outside.error_message();
  auto escaping = create(dir / "allowed/model", dir / "allowed/../out");
  EXPECT_EQ(escaping.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(escaping.error_message().rfind("spec.output.uri: ", 0), 0u) << escaping.error_message();
}

TEST_F(ServiceTest, BadSpecsAreRejectedNamingTheFieldAndStoreNothing) {
  const std::string model = DataDir("tiny-llama");
  struct Case {
    std::function<void(v1::JobSpec&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec& s) { s.set_target_sparsity(1.0); }, "spec.target_sparsity"},
      {[](v1::JobSpec& s) { s.set_target_sparsity(-0.1); }, "spec.target_sparsity"},
      {[](v1::JobSpec& s) { s.set_target_sparsity(std::nan("")); }, "spec.target_sparsity"},
      {[](v1::JobSpec& s) { s.clear_model_uri(); }, "spec.model_uri"},
      {[](v1::JobSpec& s) { s.set_model_uri("models/relative"); }, "spec.model_uri"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_UNSPECIFIED); }, "spec.method"},
      {[](v1::JobSpec& s) { s.set_method(static_cast<v1::Method>(99)); }, "spec.method"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_PREDICTOR_SEARCH); }, "spec.calibration"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_PREDICTOR_SEARCH);
         SetCalibration(s, 8, 64);
       },
       "spec.search.base_method"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_PREDICTOR_SEARCH);
         SetCalibration(s, 8, 64);
         s.mutable_search()->set_base_method(v1::METHOD_SPARSELLM);
       },
       "spec.search.base_method"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_PREDICTOR_SEARCH);
         SetCalibration(s, 8, 64);
         s.mutable_search()->set_base_method(v1::METHOD_WANDA);
         s.mutable_search()->set_measured_configurations(5);
       },
       "spec.search.measured_configurations"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_PREDICTOR_SEARCH);
         SetCalibration(s, 8, 64);
         s.mutable_search()->set_base_method(v1::METHOD_WANDA);
         s.mutable_search()->set_search_budget(10);
       },
       "spec.search.search_budget"},
      {[](v1::JobSpec& s) { s.mutable_search()->set_base_method(v1::METHOD_WANDA); }, "spec.search"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_PREDICTOR_SEARCH);
         s.set_structure(v1::STRUCTURE_FFN_NEURONS);
         SetCalibration(s, 8, 64);
         s.mutable_search()->set_base_method(v1::METHOD_WANDA);
       },
       "spec.search.base_method"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_PREDICTOR_SEARCH);
         s.set_structure(v1::STRUCTURE_FFN_NEURONS);
         s.set_allocation(v1::ALLOCATION_GLOBAL);
         SetCalibration(s, 8, 64);
         s.mutable_search()->set_base_method(v1::METHOD_MAGNITUDE);
       },
       "spec.allocation"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_MOVEMENT); }, "spec.fine_tune"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_MOVEMENT), s.set_structure(v1::STRUCTURE_UNSTRUCTURED); },
       "spec.structure"},
      {[](v1::JobSpec& s) {
         s.set_method(v1::METHOD_GUM), s.set_structure(v1::STRUCTURE_FFN_NEURONS);
         s.mutable_fine_tune()->set_steps(10);
       },
       "spec.fine_tune.dataset_uri"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_GUM), s.set_structure(v1::STRUCTURE_FFN_NEURONS);
         SetFineTune(s, 10);
         s.set_allocation(v1::ALLOCATION_UNIFORM);
       },
       "spec.allocation"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_MOVEMENT), s.set_structure(v1::STRUCTURE_FFN_NEURONS);
         SetFineTune(s, -1);
       },
       "spec.fine_tune.steps"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_MOVEMENT), s.set_structure(v1::STRUCTURE_FFN_NEURONS);
         SetFineTune(s, 10);
         s.mutable_fine_tune()->set_uniqueness_weight(1.0);
       },
       "spec.fine_tune.uniqueness_weight"},
      {[&](v1::JobSpec& s) { SetFineTune(s, 10); }, "spec.fine_tune"},
      {[](v1::JobSpec& s) { s.mutable_low_rank()->set_dense_output(true); }, "spec.low_rank"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_LOW_RANK), s.set_structure(v1::STRUCTURE_RANK); },
       "spec.calibration"},
      {[](v1::JobSpec& s) {
         s.set_method(v1::METHOD_LOW_RANK), s.set_structure(v1::STRUCTURE_RANK);
         s.mutable_low_rank()->set_algorithm(v1::LOW_RANK_FLOP);
       },
       "spec.fine_tune"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_LOW_RANK), s.set_structure(v1::STRUCTURE_FFN_NEURONS); },
       "spec.structure"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_SPARSEGPT); }, "spec.calibration"},
      {[](v1::JobSpec& s) { s.set_structure(v1::STRUCTURE_LAYERS); }, "spec.structure"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_BLOCK_INFLUENCE), s.set_structure(v1::STRUCTURE_LAYERS); },
       "spec.calibration"},
      {[](v1::JobSpec& s) { s.set_allocation(v1::ALLOCATION_GLOBAL); }, "spec.allocation"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_WANDA), s.set_structure(v1::STRUCTURE_FFN_NEURONS); },
       "spec.structure"},
      {[](v1::JobSpec& s) { s.set_method(v1::METHOD_LAST_BLOCKS), s.set_structure(v1::STRUCTURE_UNSTRUCTURED); },
       "spec.structure"},
      {[](v1::JobSpec& s) {
         s.set_method(v1::METHOD_LAST_BLOCKS);
         s.set_structure(v1::STRUCTURE_LAYERS);
         s.mutable_output()->set_format(v1::OUTPUT_FORMAT_SPARSE_BITMASK);
       },
       "spec.output.format"},
      {[](v1::JobSpec& s) { s.set_structure(v1::STRUCTURE_N_M); }, "spec.n_m"},
      {[](v1::JobSpec& s) { s.mutable_n_m()->set_n(2); }, "spec.n_m"},
      {[](v1::JobSpec& s) { SetNM(s, 4, 4); }, "spec.n_m.n"},
      {[](v1::JobSpec& s) { SetNM(s, 5, 4); }, "spec.n_m.n"},
      {[](v1::JobSpec& s) { SetNM(s, 1, 1); }, "spec.n_m.m"},
      {[](v1::JobSpec& s) { SetNM(s, 2, 4), s.set_target_sparsity(0.7); }, "spec.target_sparsity"},
      {[](v1::JobSpec& s) { s.mutable_output()->set_format(v1::OUTPUT_FORMAT_SPARSE_24_BITMASK); }, "spec.output.format"},
      {[](v1::JobSpec& s) { s.mutable_calibration()->set_seq_len(128); }, "spec.calibration.dataset_uri"},
      {[&](v1::JobSpec& s) { SetCalibration(s, 0, 128); }, "spec.calibration.num_samples"},
      {[&](v1::JobSpec& s) { SetCalibration(s, 8, 1); }, "spec.calibration.seq_len"},
      {[](v1::JobSpec& s) { s.mutable_sparsellm()->set_iterations(3); }, "spec.sparsellm"},
      {[&](v1::JobSpec& s) {
         s.set_method(v1::METHOD_SPARSELLM);
         SetCalibration(s, 8, 64);
         s.mutable_sparsellm()->set_gamma(-1);
       },
       "spec.sparsellm.gamma"},
      {[](v1::JobSpec& s) { s.mutable_output()->clear_uri(); }, "spec.output.uri"},
      {[](v1::JobSpec& s) { s.mutable_output()->set_uri(s.model_uri() + "/"); }, "spec.output.uri"},
      {[](v1::JobSpec& s) { s.mutable_output()->set_uri("gs://bucket/out"); }, "spec.output.uri"},
      {[](v1::JobSpec& s) { s.mutable_output()->set_uri("hf://org/name"); }, "spec.output.uri"},
      {[](v1::JobSpec& s) {
         s.mutable_calibration()->set_dataset_uri("hf://org/data");
         s.mutable_calibration()->set_num_samples(8);
         s.mutable_calibration()->set_seq_len(64);
       },
       "spec.calibration.dataset_uri"},
  };
  for (const auto& c : cases) {
    v1::JobSpec spec = Spec(model, dir_ / "out");
    c.edit(spec);
    v1::Job job;
    grpc::Status st = Create(spec, &job);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(st.error_message().rfind(c.field + ":", 0), 0u) << st.error_message();
  }
  v1::CreateJobRequest no_spec;
  v1::Job job;
  EXPECT_EQ(pruning_->CreateJob(Context().get(), no_spec, &job).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(JobCount(), 0);

  v1::GetJobRequest missing;
  missing.set_job_id("nope");
  EXPECT_EQ(pruning_->GetJob(Context().get(), missing, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::WatchJobRequest watch;
  watch.set_job_id("nope");
  auto context = Context();
  auto reader = pruning_->WatchJob(context.get(), watch);
  v1::JobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

// The issue's oversized requests, through the service: each refused naming what is too big and the
// limit; and a full store answers UNAVAILABLE (retried by callers), not INTERNAL.
TEST_F(ServiceTest, OversizedRequestsAreRefusedNamingTheLimitAndAFullStoreIsUnavailable) {
  v1::Job job;
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), dir_ / "out");
  (*spec.mutable_labels())["team"] = std::string(3'900'000, 'x');
  grpc::Status st = Create(spec, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ApplySpecDefaults(spec);  // the server measures the spec it would store
  EXPECT_EQ(st.error_message(), absl::StrCat("spec: ", spec.ByteSizeLong(), " bytes, more than the limit of 65536"));
  spec = Spec(DataDir("tiny-llama"), dir_ / "out");
  for (int i = 0; i < 100000; ++i) (*spec.mutable_labels())[absl::StrCat("k", i)] = "v";
  st = Create(spec, &job);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("spec: ", 0), 0u) << st.error_message();
  EXPECT_EQ(JobCount(), 0);

  ASSERT_TRUE(Create(Spec(DataDir("tiny-llama"), dir_ / "out"), &job).ok());
  v1::LeaseJobRequest lease;
  lease.set_worker_id("flooding-worker");
  v1::LeaseJobResponse leased;
  ASSERT_TRUE(workers_->LeaseJob(Context(30, testing::kWorkerToken).get(), lease, &leased).ok());
  v1::ReportEventsRequest flood;
  flood.set_job_id(job.id());
  flood.set_lease_id(leased.lease_id());
  for (int i = 0; i < 2000; ++i) flood.add_events()->mutable_progress()->set_stage("pruning");
  v1::ReportEventsResponse reported;
  st = workers_->ReportEvents(Context(30, testing::kWorkerToken).get(), flood, &reported);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "events: 2000 in one call, more than the limit of 1024");

  server_.reset();
  StartServer("30s", 0, {"--max-db-bytes", "262144"});
  int created = 0;
  for (; created < 5000; ++created) {
    st = Create(Spec(DataDir("tiny-llama"), dir_ / absl::StrCat("out-", created)), &job);
    if (!st.ok()) break;
  }
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(st.error_message().find("the job store is full"), std::string::npos) << st.error_message();
  EXPECT_GT(created, 10);
  EXPECT_EQ(Get(job.id()).state(), v1::JOB_STATE_QUEUED) << "reads go on";
}

TEST_F(ServiceTest, BrokenModelsFailTheJobAndTheWorkerTakesTheNext) {
  StartWorker();
  fs::copy(DataDir("tiny-llama"), dir_ / "truncated", fs::copy_options::recursive);
  fs::resize_file(dir_ / "truncated/model.safetensors", 1000);
  fs::copy(DataDir("tiny-llama"), dir_ / "bert", fs::copy_options::recursive);
  ASSERT_TRUE(WriteFileAtomically(dir_ / "bert/config.json", R"({"model_type": "bert"})").ok());

  const std::vector<std::pair<std::string, std::string>> broken = {
      {dir_ / "missing", "model_uri: file://" + dir_ / "missing" + ": no such file or directory"},
      {dir_ / "truncated", "model.safetensors: header length"},
      {dir_ / "bert", "model_type 'bert' is not supported"},
  };
  std::vector<std::string> ids;
  for (const auto& [path, message] : broken) {
    v1::Job job;
    // Each its own output: two jobs that have not ended may not share one.
    ASSERT_TRUE(Create(Spec(path, dir_ / ("never" + std::to_string(ids.size()))), &job).ok());
    ids.push_back(job.id());
  }
  v1::Job good;
  ASSERT_TRUE(Create(Spec(DataDir("tiny-gpt2"), dir_ / "good"), &good).ok());
  for (size_t i = 0; i < broken.size(); ++i) {
    Watch(ids[i]);
    v1::Job job = Get(ids[i]);
    EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
    EXPECT_NE(job.error().find(broken[i].second), std::string::npos) << job.error();
    EXPECT_EQ(job.attempt_count(), 1) << "a broken model is not retried";
  }
  Watch(good.id());
  EXPECT_EQ(Get(good.id()).state(), v1::JOB_STATE_SUCCEEDED) << worker_->Log();
  for (size_t i = 0; i < broken.size(); ++i) EXPECT_FALSE(fs::exists(dir_ / ("never" + std::to_string(i))));
  testing::ExpectMagnitudePruned(DataDir("tiny-gpt2"), dir_ / "good", 0.5);
}

TEST_F(ServiceTest, ExpiredLeaseGoesBackToTheQueueAndAnotherWorkerFinishesIt) {
  server_.reset();
  StartServer("1s");
  v1::Job job;
  ASSERT_TRUE(Create(Spec(DataDir("tiny-llama"), dir_ / "out"), &job).ok());
  // A worker that leases the job and then goes silent.
  v1::LeaseJobRequest lease;
  lease.set_worker_id("silent-worker");
  lease.mutable_wait()->set_seconds(5);
  v1::LeaseJobResponse leased;
  ASSERT_TRUE(workers_->LeaseJob(Context(30, testing::kWorkerToken).get(), lease, &leased).ok());
  ASSERT_EQ(leased.job().id(), job.id());

  StartWorker();
  Watch(job.id());
  v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.attempt_count(), 2);
  // The silent worker's lease is gone: its late reports are refused.
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_job_id(job.id());
  heartbeat.set_lease_id(leased.lease_id());
  v1::HeartbeatResponse response;
  EXPECT_EQ(workers_->Heartbeat(Context(30, testing::kWorkerToken).get(), heartbeat, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  bool saw_expiry = false;
  for (const auto& e : Watch(job.id())) {
    saw_expiry |= e.has_state_change() && e.state_change().state() == v1::JOB_STATE_QUEUED &&
                  e.state_change().message().find("silent-worker stopped heartbeating") != std::string::npos;
  }
  EXPECT_TRUE(saw_expiry);
}

TEST_F(ServiceTest, QueuedJobIsCancelledAtOnceAndJobsSurviveRestart) {
  v1::Job job;
  ASSERT_TRUE(Create(Spec(DataDir("tiny-llama"), dir_ / "out"), &job, "keep-me").ok());
  v1::Job other;
  ASSERT_TRUE(Create(Spec(DataDir("tiny-llama"), dir_ / "out2"), &other).ok());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(other.id());
  v1::Job cancelled;
  ASSERT_TRUE(pruning_->CancelJob(Context().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(pruning_->CancelJob(Context().get(), cancel, &cancelled).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Log();
  StartServer("30s");
  EXPECT_EQ(Get(job.id()).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Get(other.id()).state(), v1::JOB_STATE_CANCELLED);
  StartWorker();
  Watch(job.id());
  EXPECT_EQ(Get(job.id()).state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(ServiceTest, HealthSaysServingAndReflectionListsTheApi) {
  EXPECT_EQ(HealthCheck(health_address_), kServing);
  grpc::GenericStub stub(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call = stub.PrepareCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  auto step = [&](int id) {
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, reinterpret_cast<void*>(id));
    EXPECT_TRUE(ok) << "step " << id;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  step(1);
  const std::string list_services("\x3a\x00", 2);  // ServerReflectionRequest{list_services: ""}
  grpc::Slice slice(list_services);
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  step(2);
  call->WritesDone(reinterpret_cast<void*>(3));
  step(3);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  step(4);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  EXPECT_TRUE(status.ok()) << status.error_message();
  const std::string listed = ToString(response);
  EXPECT_NE(listed.find("shears.v1.Pruning"), std::string::npos);
  EXPECT_NE(listed.find("shears.v1.Workers"), std::string::npos);
  EXPECT_NE(listed.find("grpc.health.v1.Health"), std::string::npos);
}

// Big enough that pruning takes seconds, so the job can be interrupted between blocks.
constexpr int kSlowBlocks = 48;

TEST_F(ServiceTest, RunningJobIsCancelledThroughTheHeartbeat) {
  server_.reset();
  StartServer("900ms");  // heartbeats every 300 ms
  testing::WriteSyntheticLlama(dir_ / "slow", kSlowBlocks, 256, 704);
  StartWorker();
  v1::Job job;
  ASSERT_TRUE(Create(Spec(dir_ / "slow", dir_ / "out"), &job).ok());
  bool cancel_sent = false;
  int layers = 0;
  auto events = Watch(job.id(), 0, [&](const v1::JobEvent& e) {
    if (!e.has_layer()) return;
    ++layers;
    if (cancel_sent) return;
    cancel_sent = true;
    v1::CancelJobRequest cancel;
    cancel.set_job_id(job.id());
    v1::Job reply;
    EXPECT_TRUE(pruning_->CancelJob(Context().get(), cancel, &reply).ok());
    EXPECT_TRUE(reply.cancel_requested());
  });
  v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED) << done.error();
  EXPECT_LT(layers, kSlowBlocks * 7) << "the worker stopped before the end";
  EXPECT_FALSE(fs::exists(dir_ / "out/shears_report.json"));
  EXPECT_EQ(done.error(), "cancelled by request") << "the worker stopped and said so, not a lapsed lease";
}

// The issue's bad day: the server killed (-9) while a job runs and down for longer than a lease's
// time to live. The worker goes on pruning, keeps its reports and heartbeats until the server is
// back; the restarted server gives the lease a TTL of grace; the job ends on its first attempt with
// every layer's event, the sequence without a gap.
TEST_F(ServiceTest, AServerKilledMidJobComesBackAndTheAttemptGoesOn) {
  server_.reset();
  StartServer("2s");
  const int port = std::stoi(address_.substr(address_.rfind(':') + 1));
  testing::WriteSyntheticLlama(dir_ / "slow", kSlowBlocks, 256, 704);
  StartWorker();
  v1::Job job;
  ASSERT_TRUE(Create(Spec(dir_ / "slow", dir_ / "out"), &job).ok());
  {
    v1::WatchJobRequest request;
    request.set_job_id(job.id());
    auto context = Context(120);
    auto reader = pruning_->WatchJob(context.get(), request);
    v1::JobEvent event;
    while (reader->Read(&event) && !event.has_layer()) {
    }
    context->TryCancel();
  }
  EXPECT_EQ(server_->Stop(SIGKILL), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(5));  // two and a half TTLs
  StartServer("2s", port);
  const auto events = Watch(job.id());
  const v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error() << worker_->Log();
  EXPECT_EQ(done.attempt_count(), 1) << "no attempt burned by the restart\n" << worker_->Log();
  EXPECT_EQ(LayerEventsOfAGaplessLog(events), done.result().layers_size())
      << "every layer's event arrived, the outage's included";
}

// A poison job: an engine that dies (SIGABRT here, as an abort in LibTorch would) ends its own
// process, not the worker. The worker reports the crash with the signal and the last stage, the job
// goes back to the queue, and at its second crash (--max-crashes 2) it fails instead of reaching a
// third worker; the worker lives on and runs the next job.
TEST_F(ServiceTest, AnEngineCrashFailsTheAttemptNotTheWorkerAndAPoisonJobStopsAtMaxCrashes) {
  testing::WriteSyntheticLlama(dir_ / "slow", kSlowBlocks, 256, 704);
  StartWorker();
  v1::Job job;
  ASSERT_TRUE(Create(Spec(dir_ / "slow", dir_ / "out"), &job).ok());
  bool armed = false;  // the attempt's first layer event is the moment to crash it
  int crashes = 0;
  const auto events = Watch(job.id(), 0, [&](const v1::JobEvent& e) {
    if (e.has_state_change() && e.state_change().state() == v1::JOB_STATE_RUNNING) armed = true;
    if (!e.has_layer() || !armed) return;
    armed = false;
    const auto engines = testing::ChildrenOf(worker_->pid());
    ASSERT_EQ(engines.size(), 1u) << "one engine process per attempt";
    kill(engines[0], SIGABRT);
    ++crashes;
  });
  const v1::Job done = Get(job.id());
  EXPECT_EQ(crashes, 2);
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(done.crash_count(), 2);
  EXPECT_EQ(done.attempt_count(), 2) << "no third attempt";
  EXPECT_NE(done.error().find("crash 2 of at most 2) on worker test-worker: the engine process was killed by "
                              "signal 6 (SIGABRT, Aborted); last stage: "),
            std::string::npos)
      << done.error();
  // Where it was: after a layer of an early block, or a block done (the kill lands as it may).
  EXPECT_TRUE(done.error().find(", after layer model.layers.") != std::string::npos ||
              done.error().find("last stage: pruning (block ") != std::string::npos)
      << done.error();
  bool requeued = false;
  for (const auto& e : events) {
    requeued |= e.has_state_change() && e.state_change().state() == v1::JOB_STATE_QUEUED &&
                e.state_change().message().find("attempt 1 crashed (crash 1 of at most 2)") != std::string::npos;
  }
  EXPECT_TRUE(requeued);
  EXPECT_FALSE(fs::exists(dir_ / "out/manifest.json"));

  v1::Job next;
  ASSERT_TRUE(Create(Spec(DataDir("tiny-llama"), dir_ / "out2"), &next).ok());
  Watch(next.id());
  EXPECT_EQ(Get(next.id()).state(), v1::JOB_STATE_SUCCEEDED) << "the same worker process took the next job\n"
                                                              << worker_->Log();
}

// A store that fills mid-job (its --max-db-bytes here; a full disk answers the same): the job's
// reports are refused UNAVAILABLE, the worker keeps them and the outcome in its outbox, and is then
// killed. The server restarted with room, the worker started again delivers what it owed while the
// lease is still its own: the job ends on attempt 1, published once, with every layer's event and
// no gap.
TEST_F(ServiceTest, AWorkerKilledHoldingTheOutcomeDeliversItWhenItStartsAgain) {
  server_.reset();
  StartServer("30s", 0, {"--max-db-bytes", "49152"});
  const int port = std::stoi(address_.substr(address_.rfind(':') + 1));
  testing::WriteSyntheticLlama(dir_ / "slow", kSlowBlocks, 256, 704);
  StartWorker();
  v1::Job job;
  ASSERT_TRUE(Create(Spec(dir_ / "slow", dir_ / "out"), &job).ok());
  // The worker finishes and keeps the outcome in its outbox, retrying.
  bool outcome_kept = false;
  for (int i = 0; i < 1200 && !outcome_kept; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_ / "work/outbox", ec)) {
      v1::Outbox record;
      if (entry.path().extension() == ".pb" && record.ParseFromString(ReadFile(entry.path()).value_or("")) &&
          record.has_outcome()) {
        outcome_kept = record.outcome().has_result();
      }
    }
  }
  ASSERT_TRUE(outcome_kept) << worker_->Log();
  EXPECT_TRUE(fs::exists(dir_ / "out/manifest.json")) << "published before the outcome";
  EXPECT_NE(worker_->Log().find("the job store is full"), std::string::npos) << worker_->Log();
  EXPECT_EQ(worker_->Stop(SIGKILL), 128 + SIGKILL);
  server_.reset();
  StartServer("30s", port);
  StartWorker();
  const auto events = Watch(job.id());
  const v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error() << worker_->Log();
  EXPECT_EQ(done.attempt_count(), 1) << "not run again\n" << worker_->Log();
  EXPECT_EQ(LayerEventsOfAGaplessLog(events), kSlowBlocks * 7) << "the events queued when the worker died arrived too";
  EXPECT_TRUE(fs::exists(dir_ / "out/manifest.json"));
  // The job's end reaches the watcher as the server commits it; the worker logs the delivery and
  // empties its outbox a moment after the answer reaches it.
  const std::string delivered = "delivered what an earlier run of this worker owed the server (events and the outcome)";
  for (int i = 0; i < 100 && (worker_->Log().find(delivered) == std::string::npos || !fs::is_empty(dir_ / "work/outbox"));
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(worker_->Log().find(delivered), std::string::npos) << worker_->Log();
  EXPECT_TRUE(fs::is_empty(dir_ / "work/outbox"));
}

TEST_F(ServiceTest, WorkerGivesItsJobBackOnSigterm) {
  testing::WriteSyntheticLlama(dir_ / "slow", kSlowBlocks, 256, 704);
  StartWorker();
  v1::Job job;
  ASSERT_TRUE(Create(Spec(dir_ / "slow", dir_ / "out"), &job).ok());
  // Watch in the background until the worker is pruning, then stop it as Kubernetes would.
  int exit_status = -1;
  v1::WatchJobRequest request;
  request.set_job_id(job.id());
  auto context = Context(120);
  auto reader = pruning_->WatchJob(context.get(), request);
  v1::JobEvent event;
  while (reader->Read(&event)) {
    if (event.has_layer()) {
      exit_status = worker_->Stop(SIGTERM);
      break;
    }
  }
  context->TryCancel();
  reader->Finish();
  EXPECT_EQ(exit_status, 0) << worker_->Log();
  v1::Job back = Get(job.id());
  EXPECT_EQ(back.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(back.attempt_count(), 0) << "a given-back attempt does not count";

  StartWorker();
  Watch(job.id());
  v1::Job done = Get(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.attempt_count(), 1);
  EXPECT_EQ(done.result().layers_size(), kSlowBlocks * 7);
}

TEST_F(ServiceTest, IdleWorkerStopsPromptlyOnSigterm) {
  StartWorker();
  const auto ready = std::chrono::steady_clock::now() + kStartTimeout;
  while (worker_->Log().find("serving") == std::string::npos && std::chrono::steady_clock::now() < ready) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // into its long poll
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(worker_->Stop(SIGTERM), 0) << worker_->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << "the long poll was cut short";
}

// SIGTERM starts the drain: readiness probes see NOT_SERVING while calls are still answered, so
// Kubernetes stops routing to the pod before it stops listening.
TEST_F(ServiceTest, HealthSaysNotServingWhileDraining) {
  TempDir dir;
  auto draining = testing::StartServer(dir.path(), {"--drain-delay", "4s"});
  ASSERT_FALSE(draining.address.empty()) << draining.process->Log();
  EXPECT_EQ(HealthCheck(draining.address), kServing);
  draining.process->Signal(SIGTERM);
  std::string health;
  for (int i = 0; i < 100 && (health = HealthCheck(draining.address)) != kNotServing; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(health, kNotServing);
  auto pruning = v1::Pruning::NewStub(grpc::CreateChannel(draining.address, grpc::InsecureChannelCredentials()));
  v1::GetJobRequest request;
  request.set_job_id("none");
  v1::Job job;
  EXPECT_EQ(pruning->GetJob(Context().get(), request, &job).error_code(), grpc::StatusCode::NOT_FOUND)
      << "still answering while draining";
  EXPECT_EQ(draining.process->Wait(), 0);
  EXPECT_NE(HealthCheck(draining.address), kNotServing) << "stopped listening after the drain";
}

}  // namespace
}  // namespace shears
