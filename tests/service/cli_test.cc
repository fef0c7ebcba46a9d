// shearsctl and `shears-worker run-local` as a user types them.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/support/model_builders.h"
#include "tests/support/process.h"
#include "tests/support/pruned_model_checks.h"
#include "tests/support/references.h"
#include "tests/support/test_identities.h"
#include "tests/support/test_util.h"

namespace shears {
namespace {

namespace fs = std::filesystem;
using testing::Binary;
using testing::DataDir;
using testing::Process;
using testing::RunCommand;
using testing::TempDir;

// As deployed: the server on TLS with identities; shearsctl and the example clients call it as
// alice, a client of team-a, and workers with the worker token.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    secure_ = testing::StartSecureServer(dir_.path());
    ASSERT_TRUE(secure_.error.empty()) << secure_.error;
    address_ = secure_.server.address;
  }

  testing::Output Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {Binary("client/shearsctl"), "--tls-ca", secure_.certs.ca, "--token", testing::kAliceToken});
    return RunCommand(args, dir_ / "ctl.log");
  }
  // A worker of this server, with `flags`.
  std::unique_ptr<Process> StartWorker(const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {Binary("worker/shears-worker"), "--server", address_, "--tls-ca",
                                     secure_.certs.ca, "--token-file", secure_.worker_token, "--work-dir",
                                     dir_ / "work", "--poll-wait", "2s"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return std::make_unique<Process>(argv, dir_ / "worker.log");
  }

  TempDir dir_;
  std::string address_;
  testing::SecureServer secure_;
};

TEST_F(CliTest, CreateWaitGetListWithGlobalFlagsAnywhere) {
  auto worker = StartWorker();
  const std::string model = "file://" + DataDir("tiny-llama");
  const std::string out = dir_ / "out";
  // Global flag before the command.
  auto created = Ctl({"--server", address_, "create", "--model", model, "--method", "magnitude", "--sparsity", "0.5",
                      "--output", "file://" + out, "--request-id", "cli-1", "--label", "team=ml", "--json"});
  ASSERT_EQ(created.status, 0) << created.out;
  auto job = nlohmann::json::parse(created.out);
  const std::string id = job["id"];
  EXPECT_EQ(job["spec"]["method"], "METHOD_MAGNITUDE");
  EXPECT_EQ(job["spec"]["labels"]["team"], "ml");

  // Global flag after the command; watch prints plain lines when not on a terminal.
  auto watched = Ctl({"watch", id, "--server", address_});
  EXPECT_EQ(watched.status, 0) << watched.out;
  EXPECT_NE(watched.out.find("state JOB_STATE_SUCCEEDED"), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find("progress 47% pruning: block 1/2"), std::string::npos) << watched.out;
  // After each block its pace and the time left; at the end where the time went.
  EXPECT_NE(watched.out.find(" s a block, about "), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find("seconds   download "), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find(" publish "), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find("result    sparsity 0.5000"), std::string::npos) << watched.out;
  testing::ExpectMagnitudePruned(DataDir("tiny-llama"), out, 0.5);

  auto got = Ctl({"get", id, "--json", "--server=" + address_});
  ASSERT_EQ(got.status, 0) << got.out;
  auto done = nlohmann::json::parse(got.out);
  EXPECT_EQ(done["state"], "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(done["result"]["layers"].size(), 14u);

  auto listed = Ctl({"--server", address_, "list", "--state", "succeeded"});
  ASSERT_EQ(listed.status, 0) << listed.out;
  EXPECT_NE(listed.out.find(id), std::string::npos) << listed.out;
  EXPECT_EQ(Ctl({"--server", address_, "list", "--state", "failed"}).out.find(id), std::string::npos);

  // The same request id gives back the same job.
  auto again = Ctl({"--server", address_, "create", "--model", model, "--method", "magnitude", "--sparsity", "0.5",
                    "--output", "file://" + out, "--request-id", "cli-1", "--label", "team=ml", "--json"});
  EXPECT_EQ(nlohmann::json::parse(again.out)["id"], id);

  // --wait turns the job's outcome into the exit status.
  auto failed = Ctl({"--server", address_, "create", "--model", "file://" + dir_ / "missing", "--method", "magnitude",
                     "--sparsity", "0.5", "--output", "file://" + dir_ / "x", "--wait"});
  EXPECT_EQ(failed.status, 1) << failed.out;
  EXPECT_NE(failed.out.find("no such file or directory"), std::string::npos) << failed.out;
}

TEST_F(CliTest, CreatesACalibratedNMJobWithCompressedOutputFromFlags) {
  auto worker = StartWorker();
  const std::string out = dir_ / "out";
  auto run = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method", "wanda",
                  "--nm", "2:4", "--calibration", "file://" + testing::KjvSplitsDir() + "/train.txt", "--samples", "8",
                  "--seq-len", "64", "--format", "sparse-24-bitmask", "--output", "file://" + out, "--wait"});
  ASSERT_EQ(run.status, 0) << run.out;
  EXPECT_NE(run.out.find("layer model.layers.0.self_attn.q_proj.weight sparsity 0.5 reconstruction error 0."),
            std::string::npos)
      << run.out;
  auto config = nlohmann::json::parse(ReadFile(out + "/config.json").value());
  EXPECT_EQ(config["quantization_config"]["sparsity_config"]["format"], "sparse-24-bitmask");
  auto bad = Ctl({"--server", address_, "create", "--method", "wanda", "--nm", "2-4"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.out.find("--nm: expected N:M such as 2:4, got 2-4"), std::string::npos) << bad.out;
}

TEST_F(CliTest, CreatesFineTuningAndLowRankJobsFromFlags) {
  auto worker = StartWorker();
  const std::string train = "file://" + testing::KjvSplitsDir() + "/train.txt";
  auto gum = Ctl({"--server", address_, "--json", "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                  "gum", "--sparsity", "0.25", "--fine-tune", train, "--steps", "4", "--distill", "--output",
                  "file://" + (dir_ / "gum"), "--wait"});
  ASSERT_EQ(gum.status, 0) << gum.out;
  const auto first_event = nlohmann::json::parse(gum.out.substr(0, gum.out.find('\n')));
  auto got = Ctl({"--server", address_, "--json", "get", first_event["job_id"].get<std::string>()});
  ASSERT_EQ(got.status, 0) << got.out;
  const auto job = nlohmann::json::parse(got.out);
  EXPECT_EQ(job["spec"]["fine_tune"]["distill"], true) << got.out;
  EXPECT_EQ(job["spec"]["fine_tune"]["steps"], 4) << got.out;
  // GUM takes a quarter of the 2 × 176 neurons wherever they are; blocks of different widths are
  // in the Nemotron-NAS layout, with its configuration class beside them.
  const std::vector<int64_t> widths = testing::WrittenFfnWidths(dir_ / "gum");
  ASSERT_EQ(widths.size(), 2u);
  EXPECT_EQ(widths[0] + widths[1], 2 * 176 - 88);
  if (widths[0] != widths[1]) EXPECT_TRUE(std::filesystem::exists(dir_ / "gum/configuration_decilm.py"));
  auto flop = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                   "low-rank", "--low-rank", "flop", "--sparsity", "0.3", "--fine-tune", train, "--steps", "4",
                   "--output", "file://" + (dir_ / "flop"), "--wait"});
  ASSERT_EQ(flop.status, 0) << flop.out;
  auto bad = Ctl({"--server", address_, "create", "--method", "low-rank", "--low-rank", "qr"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.out.find("--low-rank: unknown algorithm qr"), std::string::npos) << bad.out;
}

TEST_F(CliTest, CreatesSublayerHeadAndAlignedWidthJobsFromFlags) {
  auto worker = StartWorker();
  // 15% of tiny-llama's blocks is one attention sublayer; block 0's must stay (vLLM's DeciLM
  // needs an attention first), so block 1's goes.
  auto run = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                  "block_influence", "--structure", "sublayers", "--sublayers", "attention", "--sparsity", "0.15",
                  "--calibration", "file://" + testing::KjvSplitsDir() + "/train.txt", "--samples", "4", "--seq-len",
                  "64", "--output", "file://" + (dir_ / "sublayers"), "--wait"});
  ASSERT_EQ(run.status, 0) << run.out;
  const size_t at = run.out.find("created job ");
  ASSERT_NE(at, std::string::npos) << run.out;
  auto got = Ctl({"--server", address_, "get", run.out.substr(at + 12, run.out.find('\n', at) - at - 12)});
  EXPECT_NE(got.out.find("removed   attention of block 1\n"), std::string::npos) << got.out;
  const auto config = nlohmann::json::parse(ReadFile(dir_ / "sublayers/config.json").value());
  EXPECT_EQ(config["block_configs"][1]["attention"]["no_op"], true) << config.dump();

  auto aligned = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                      "magnitude", "--structure", "ffn_neurons", "--sparsity", "0.3", "--width-multiple", "32",
                      "--output", "file://" + (dir_ / "aligned"), "--wait"});
  ASSERT_EQ(aligned.status, 0) << aligned.out;
  EXPECT_EQ(testing::WrittenFfnWidths(dir_ / "aligned"), (std::vector<int64_t>{128, 128}));  // 123 kept -> 128

  auto kind = Ctl({"--server", address_, "create", "--method", "random", "--sublayers", "heads"});
  EXPECT_EQ(kind.status, 2);
  EXPECT_NE(kind.out.find("--sublayers: unknown kind heads (all, attention or mlp)"), std::string::npos) << kind.out;
  auto misplaced = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                        "magnitude", "--sparsity", "0.3", "--width-multiple", "64", "--output",
                        "file://" + (dir_ / "x")});
  EXPECT_EQ(misplaced.status, 3);
  EXPECT_NE(misplaced.out.find("width_multiple: applies to STRUCTURE_FFN_NEURONS and to STRUCTURE_ATTENTION_HEADS"),
            std::string::npos)
      << misplaced.out;

  // Half of tiny-llama's KV groups (one of two) by their share of the attention output.
  auto heads = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                    "activation", "--structure", "attention_heads", "--sparsity", "0.5", "--calibration",
                    "file://" + testing::KjvSplitsDir() + "/train.txt", "--samples", "4", "--seq-len", "64",
                    "--output", "file://" + (dir_ / "heads"), "--wait"});
  ASSERT_EQ(heads.status, 0) << heads.out;
  const auto fewer = nlohmann::json::parse(ReadFile(dir_ / "heads/config.json").value());
  EXPECT_EQ(fewer["num_attention_heads"], 2) << fewer.dump();
  EXPECT_EQ(fewer["num_key_value_heads"], 1) << fewer.dump();
  EXPECT_EQ(fewer["head_dim"], 16) << fewer.dump();
}

TEST_F(CliTest, CreatesAPredictorSearchJobFromFlagsAndShowsWhatItChose) {
  auto worker = StartWorker();
  auto run = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                  "predictor_search", "--search-base", "wanda", "--search-configurations", "12", "--search-budget",
                  "100", "--sparsity", "0.5", "--calibration", "file://" + testing::KjvSplitsDir() + "/train.txt",
                  "--samples", "8", "--seq-len", "64", "--output", "file://" + (dir_ / "searched"), "--wait"});
  ASSERT_EQ(run.status, 0) << run.out;
  EXPECT_NE(run.out.find("configuration 12/12: held-out perplexity "), std::string::npos) << run.out;
  const size_t at = run.out.find("created job ");
  ASSERT_NE(at, std::string::npos) << run.out;
  const std::string id = run.out.substr(at + 12, run.out.find('\n', at) - at - 12);
  auto got = Ctl({"--server", address_, "get", id});
  ASSERT_EQ(got.status, 0) << got.out;
  EXPECT_NE(got.out.find("search    METHOD_WANDA, 12 measured, predictor rank correlation "), std::string::npos)
      << got.out;
  EXPECT_NE(got.out.find("block 1: attention "), std::string::npos) << got.out;
  auto bad = Ctl({"--server", address_, "create", "--model", "file://" + DataDir("tiny-llama"), "--method",
                  "predictor_search", "--search-base", "sparsellm", "--sparsity", "0.5", "--calibration",
                  "file://" + testing::KjvSplitsDir() + "/train.txt", "--output", "file://" + (dir_ / "x")});
  EXPECT_EQ(bad.status, 3);
  EXPECT_NE(bad.out.find("spec.search.base_method: METHOD_SPARSELLM cannot take a sparsity per layer"),
            std::string::npos)
      << bad.out;
}

TEST_F(CliTest, ThePythonClientGeneratedFromTheProtosCreatesWatchesAndReadsAJob) {
  auto worker = StartWorker();
  const std::string client = std::string(SHEARS_SOURCE_DIR) + "/client/python";
  auto generated = testing::RunCommand({"/bin/bash", client + "/generate.sh", dir_ / "py"}, dir_ / "generate.log");
  ASSERT_EQ(generated.status, 0) << generated.out;
  setenv("PYTHONPATH", (dir_ / "py").c_str(), 1);
  auto run = testing::RunCommand({"/usr/bin/python3", client + "/shears_example.py", "--server", address_, "--tls-ca",
                                  secure_.certs.ca, "--token", testing::kAliceToken, "--model",
                                  "file://" + DataDir("tiny-llama"), "--sparsity", "0.5", "--output",
                                  "file://" + (dir_ / "py-out")},
                                 dir_ / "client.log");
  unsetenv("PYTHONPATH");
  ASSERT_EQ(run.status, 0) << run.out;
  EXPECT_NE(run.out.find("JOB_STATE_SUCCEEDED"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("achieved sparsity 0.5000"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("/py-out/manifest.json"), std::string::npos) << run.out;
  EXPECT_TRUE(fs::exists(dir_ / "py-out/model.safetensors"));
}

TEST_F(CliTest, TheNodeClientLoadingTheProtosCreatesWatchesAndReadsAJob) {
  auto worker = StartWorker();
  setenv("NODE_PATH", (std::string(SHEARS_BINARY_DIR) + "/peers/node_modules").c_str(), 1);
  const std::string example = std::string(SHEARS_SOURCE_DIR) + "/client/node/shears_example.js";
  setenv("SHEARS_TOKEN", testing::kAliceToken, 1);  // the Node example reads it when no --token is given
  auto run = testing::RunCommand({"/usr/bin/env", "node", example, "--server", address_, "--tls-ca", secure_.certs.ca,
                                  "--model", "file://" + DataDir("tiny-llama"), "--sparsity", "0.5", "--output",
                                  "file://" + (dir_ / "node-out")},
                                 dir_ / "client.log");
  unsetenv("NODE_PATH");
  unsetenv("SHEARS_TOKEN");
  ASSERT_EQ(run.status, 0) << run.out;
  EXPECT_NE(run.out.find("JOB_STATE_SUCCEEDED"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("achieved sparsity 0.5000"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("/node-out/manifest.json"), std::string::npos) << run.out;
  EXPECT_TRUE(fs::exists(dir_ / "node-out/model.safetensors"));
}

TEST_F(CliTest, ErrorsHaveExitCodesAndSayWhatIsWrong) {
  auto bad = Ctl({"--server", address_, "create", "--model", "file:///m", "--method", "magnitude", "--sparsity", "2",
                  "--output", "file:///o"});
  EXPECT_EQ(bad.status, 3);
  EXPECT_NE(bad.out.find("INVALID_ARGUMENT: spec.target_sparsity: must be in [0, 1), got 2"), std::string::npos)
      << bad.out;
  auto missing = Ctl({"--server", address_, "get", "nope"});
  EXPECT_EQ(missing.status, 3);
  EXPECT_NE(missing.out.find("NOT_FOUND"), std::string::npos) << missing.out;
  auto method = Ctl({"--server", address_, "create", "--method", "pruneharder"});
  EXPECT_EQ(method.status, 2);
  EXPECT_NE(method.out.find("--method: unknown method pruneharder"), std::string::npos) << method.out;
  EXPECT_EQ(Ctl({"--server", address_, "frobnicate"}).status, 2);
  EXPECT_EQ(Ctl({"--server", address_, "get"}).status, 2);
  auto unknown_flag = Ctl({"--server", address_, "list", "--colour", "red"});
  EXPECT_EQ(unknown_flag.status, 2);
  EXPECT_NE(unknown_flag.out.find("unknown flag --colour"), std::string::npos) << unknown_flag.out;
  auto no_value = Ctl({"--server", address_, "list", "--page-size"});
  EXPECT_EQ(no_value.status, 2);
  EXPECT_NE(no_value.out.find("flag --page-size needs a value"), std::string::npos) << no_value.out;
  // No server there: a deadline, not a hang.
  auto down = Ctl({"--server", "127.0.0.1:1", "--timeout", "2s", "get", "x"});
  EXPECT_EQ(down.status, 3);
}

TEST(RunLocal, RunsOneJobFromAJsonSpecWithoutAServer) {
  TempDir dir;
  const std::string spec = R"({"model_uri": "file://)" + DataDir("tiny-gpt2") +
                           R"(", "method": "METHOD_MAGNITUDE", "target_sparsity": 0.25, "output": {"uri": "file://)" +
                           (dir / "out") + R"("}})";
  ASSERT_TRUE(WriteFileAtomically(dir / "spec.json", spec).ok());
  auto run = RunCommand({Binary("worker/shears-worker"), "run-local", "--spec", dir / "spec.json", "--work-dir",
                         dir / "work", "--threads", "2"},
                        dir / "run.log");
  ASSERT_EQ(run.status, 0) << run.out;
  EXPECT_NE(run.out.find("[100%] done"), std::string::npos) << run.out;
  testing::ExpectMagnitudePruned(DataDir("tiny-gpt2"), dir / "out", 0.25);
  EXPECT_TRUE(fs::exists(dir / "out/shears_report.json"));

  // The issue's check: the committed llama fixture with a magnitude spec reports both perplexities.
  const std::string eval_spec = R"({"model_uri": "file://)" + DataDir("tiny-llama") +
                                R"(", "method": "METHOD_MAGNITUDE", "target_sparsity": 0.5, "output": {"uri": "file://)" +
                                (dir / "out-eval") + R"("}, "evaluation": {"dataset_uri": "file://)" +
                                testing::KjvSplitsDir() + R"(/test.txt", "seq_len": 128, "max_tokens": 16384}})";
  ASSERT_TRUE(WriteFileAtomically(dir / "eval.json", eval_spec).ok());
  auto evaluated = RunCommand({Binary("worker/shears-worker"), "run-local", "--spec", dir / "eval.json", "--work-dir",
                               dir / "work", "--threads", "2"},
                              dir / "eval.log");
  ASSERT_EQ(evaluated.status, 0) << evaluated.out;
  EXPECT_NE(evaluated.out.find("perplexity: dense "), std::string::npos) << evaluated.out;
  auto report = nlohmann::json::parse(ReadFile(dir / "out-eval/shears_report.json").value());
  EXPECT_GT(report["dense_perplexity"].get<double>(), 1.0);
  EXPECT_GT(report["pruned_perplexity"].get<double>(), report["dense_perplexity"].get<double>());
  EXPECT_EQ(report["evaluation"]["windows"], "128") << "int64 is a string in protobuf JSON";
  EXPECT_EQ(report["evaluation"]["seq_len"], 128);

  ASSERT_TRUE(WriteFileAtomically(dir / "bad.json", R"({"model_uri": "file:///m", "method": "METHOD_MAGNITUDE",
      "target_sparsity": 1.5, "output": {"uri": "file:///o"}})").ok());
  auto bad = RunCommand({Binary("worker/shears-worker"), "run-local", "--spec", dir / "bad.json"}, dir / "bad.log");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.out.find("spec.target_sparsity"), std::string::npos) << bad.out;
  // The job rules speak before any method is made (issue 14's bug: "unknown pruning method").
  ASSERT_TRUE(WriteFileAtomically(dir / "movement.json", R"({"model_uri": "file:///m", "method": "METHOD_MOVEMENT",
      "structure": "STRUCTURE_UNSTRUCTURED", "target_sparsity": 0.5, "output": {"uri": "file:///o"},
      "fine_tune": {"dataset_uri": "file:///d.txt"}})").ok());
  auto movement = RunCommand({Binary("worker/shears-worker"), "run-local", "--spec", dir / "movement.json"},
                             dir / "movement.log");
  EXPECT_EQ(movement.status, 2);
  EXPECT_NE(movement.out.find("spec.structure: STRUCTURE_UNSTRUCTURED is not supported with METHOD_MOVEMENT"),
            std::string::npos)
      << movement.out;
  ASSERT_TRUE(WriteFileAtomically(dir / "garbage.json", "{not json").ok());
  auto garbage = RunCommand({Binary("worker/shears-worker"), "run-local", "--spec", dir / "garbage.json"}, dir / "g.log");
  EXPECT_EQ(garbage.status, 2);
  EXPECT_NE(garbage.out.find("not a JobSpec"), std::string::npos) << garbage.out;
}

// A run killed mid-way and started again with the same job id resumes at the first unfinished
// block, and its output is the same, byte for byte, as a run never interrupted; so are its
// report's figures, the pruned model's Block Influence of the blocks before the kill included.
TEST(RunLocal, ResumesAfterAKilledRunToTheSameBytes) {
  TempDir dir;
  // Narrow blocks keep the three runs short; 32 of them leave time to be killed mid-way.
  testing::WriteSyntheticLlama(dir / "model", 32, 128, 352);
  std::string ids;
  for (int i = 0; i < 4096; ++i) ids += std::string{static_cast<char>((i * 37) % 256), '\0'};
  ASSERT_TRUE(WriteFileAtomically(dir / "eval.bin", ids).ok());
  auto spec = [&](const std::string& out) {
    const std::string path = dir / (out + ".json");
    EXPECT_TRUE(WriteFileAtomically(path, R"({"model_uri": "file://)" + (dir / "model") +
                                              R"(", "method": "METHOD_WANDA", "target_sparsity": 0.5,
        "calibration": {"dataset_uri": "file://)" + (dir / "eval.bin") + R"(", "num_samples": 4, "seq_len": 64},
        "evaluation": {"dataset_uri": "file://)" + (dir / "eval.bin") + R"(", "seq_len": 64},
        "output": {"uri": "file://)" + (dir / out) + R"("}})")
                    .ok());
    return path;
  };
  auto run_local = [&](const std::string& spec_path, const std::string& job_id) -> std::vector<std::string> {
    return {Binary("worker/shears-worker"), "run-local", "--spec", spec_path, "--job-id", job_id, "--work-dir",
            dir / "work", "--threads", "2"};
  };

  auto whole = RunCommand(run_local(spec("whole"), "whole"), dir / "whole.log");
  ASSERT_EQ(whole.status, 0) << whole.out;

  const std::string resumed_spec = spec("resumed");
  {
    Process first(run_local(resumed_spec, "resumed"), dir / "first.log");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (first.Log().find("block 8/32") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(first.Stop(SIGKILL), 128 + SIGKILL) << "killed mid-way: " << first.Log();
  }
  EXPECT_FALSE(fs::exists(dir / "resumed/model.safetensors")) << "nothing published by the killed run";
  auto second = RunCommand(run_local(resumed_spec, "resumed"), dir / "second.log");
  ASSERT_EQ(second.status, 0) << second.out;
  EXPECT_NE(second.out.find("resuming after block "), std::string::npos) << second.out;
  EXPECT_EQ(second.out.find("block 1/32"), std::string::npos) << "the first blocks were not pruned again";

  EXPECT_EQ(ReadFile(dir / "resumed/model.safetensors").value(), ReadFile(dir / "whole/model.safetensors").value());
  auto a = nlohmann::json::parse(ReadFile(dir / "whole/shears_report.json").value());
  auto b = nlohmann::json::parse(ReadFile(dir / "resumed/shears_report.json").value());
  EXPECT_EQ(a["dense_perplexity"], b["dense_perplexity"]);
  EXPECT_EQ(a["pruned_perplexity"], b["pruned_perplexity"]);
  EXPECT_EQ(a["layers"].size(), b["layers"].size());
  ASSERT_EQ(b["redundancy"].size(), 2u);
  EXPECT_EQ(b["redundancy"][1]["blocks"].size(), 32u);
  EXPECT_EQ(a["redundancy"], b["redundancy"]);
  EXPECT_FALSE(fs::exists(dir / "work/jobs/resumed")) << "scratch removed after success";
}

// shears-worker tokenize prints the ids of a published tokenizer.json as Hugging Face's own
// JavaScript tokenizers give them, and refuses text a job would refuse, at the same byte.
TEST(WorkerTokenize, PrintsTheOraclesIdsAndRefusesTextThatIsNotUtf8) {
  TempDir dir;
  const std::string tokenizer = testing::PublishedTokenizerDir("llama3_1");
  ASSERT_TRUE(WriteFileAtomically(dir / "text.txt", "Hello, world 😀 In the beginning\n").ok());
  auto run = RunCommand({Binary("worker/shears-worker"), "tokenize", "--model", tokenizer, "--file", dir / "text.txt"},
                        dir / "tokenize.log");
  ASSERT_EQ(run.status, 0) << run.out;
  const auto printed = nlohmann::json::parse(run.out);
  EXPECT_EQ(printed["tokenizer"], "tokenizer.json");
  EXPECT_EQ(printed["note"], "");
  const auto oracle = testing::OracleIds({{tokenizer, dir / "text.txt"}}, dir.path());
  EXPECT_EQ(printed["ids"].get<std::vector<int64_t>>(), oracle.at(0));

  ASSERT_TRUE(WriteFileAtomically(dir / "bad.txt", "a\xff" "b").ok());
  run = RunCommand({Binary("worker/shears-worker"), "tokenize", "--model", tokenizer, "--file", dir / "bad.txt"},
                   dir / "bad.log");
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.out.find("text is not valid UTF-8 at byte 1"), std::string::npos) << run.out;
}

}  // namespace
}  // namespace shears
