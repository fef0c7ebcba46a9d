// One attempt's defences before and after the engine: the paths it may touch, and the publishing
// fence that keeps a stale attempt from writing a manifest.
#include "worker/job_runner.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "tests/support/test_util.h"

namespace shears::worker {
namespace {

namespace fs = std::filesystem;
using testing::DataDir;
using testing::TempDir;

v1::JobSpec Spec(const std::string& model, const std::string& output) {
  v1::JobSpec spec;
  spec.set_model_uri("file://" + model);
  spec.set_method(v1::METHOD_MAGNITUDE);
  spec.set_target_sparsity(0.5);
  spec.set_structure(v1::STRUCTURE_UNSTRUCTURED);
  spec.mutable_output()->set_uri("file://" + output);
  return spec;
}

TEST(CheckLocalPaths, NothingInTheWorkDirectoryAndNoOutputOverAnInputThroughALink) {
  TempDir dir;
  const std::string work = dir / "work";
  fs::create_directories(work + "/cache/0123");
  fs::create_directories(dir / "models/m");
  EXPECT_TRUE(CheckLocalPaths(Spec(dir / "models/m", dir / "out"), work).ok());

  // An output into the download cache (where another team's model lies) or the jobs' scratch.
  auto cache = CheckLocalPaths(Spec(dir / "models/m", work + "/cache/0123"), work);
  EXPECT_EQ(cache.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cache.message(), absl::StrCat("spec.output.uri: file://", work, "/cache/0123 lies in the worker's work directory (",
                                          work, "), which holds its download cache and other jobs' files"));
  // An input read from there.
  EXPECT_EQ(CheckLocalPaths(Spec(work + "/cache/0123", dir / "out"), work).code(), absl::StatusCode::kFailedPrecondition);
  // A link that leads there.
  fs::create_symlink(work + "/cache", dir / "innocent");
  EXPECT_EQ(CheckLocalPaths(Spec(dir / "models/m", dir / "innocent/0123"), work).code(),
            absl::StatusCode::kFailedPrecondition);
  // An output whose link leads into the model.
  fs::create_symlink(dir / "models/m", dir / "alias");
  auto alias = CheckLocalPaths(Spec(dir / "models/m", dir / "alias/out"), work);
  EXPECT_EQ(alias.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(alias.message().find("overlaps model_uri"), std::string::npos) << alias;
  EXPECT_NE(alias.message().find("once symbolic links are followed"), std::string::npos) << alias;
}

// The engine reads a dataset whole: one past the worker's --max-dataset-bytes fails the job before
// the model is loaded, naming the field and the limit.
TEST(Datasets, AFileLargerThanTheWorkersLimitFailsNamingTheField) {
  TempDir dir;
  v1::JobSpec spec = Spec(DataDir("tiny-llama"), dir / "out");
  spec.set_method(v1::METHOD_WANDA);
  std::ofstream(dir / "big.txt") << std::string(2 << 20, 'a');
  spec.mutable_calibration()->set_dataset_uri("file://" + (dir / "big.txt"));
  spec.mutable_calibration()->set_num_samples(4);
  spec.mutable_calibration()->set_seq_len(32);
  RunContext context;
  context.job_id = "big-data";
  context.work_dir = dir / "work";
  context.storage.cache_dir = dir / "work";
  context.device = "cpu";
  context.max_dataset_bytes = 1 << 20;
  auto result = RunJob(spec, context);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(result.status().message(),
            "calibration.dataset_uri: 2097152 bytes, more than the worker's limit of 1048576 (--max-dataset-bytes)");
  EXPECT_FALSE(fs::exists(dir / "out"));
}

class Fence : public ::testing::Test {
 protected:
  // Runs the job with a fence that answers `answers` in turn (OK once they run out).
  absl::StatusOr<v1::JobResult> Run(std::vector<absl::Status> answers) {
    RunContext context;
    context.job_id = "fenced";
    context.work_dir = dir_ / "work";
    context.storage.cache_dir = dir_ / "work";
    context.device = "cpu";
    context.confirm_lease = [&, answers, asked = size_t{0}]() mutable {
      ++asked_;
      return asked < answers.size() ? answers[asked++] : absl::OkStatus();
    };
    return RunJob(Spec(DataDir("tiny-llama"), out_), context);
  }

  TempDir dir_;
  const std::string out_ = dir_ / "out";
  int asked_ = 0;
};

TEST_F(Fence, AnAttemptThatHoldsItsLeasePublishesAfterTwoConfirmations) {
  auto result = Run({});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(asked_, 2);
  EXPECT_TRUE(fs::exists(out_ + "/manifest.json"));
}

// The lease went elsewhere before publishing began: the newer attempt's published output stays as
// it was, its manifest included.
TEST_F(Fence, AStaleAttemptTouchesNothingOfTheOutput) {
  fs::create_directories(out_);
  ASSERT_TRUE(WriteFileAtomically(out_ + "/manifest.json", "the newer attempt's").ok());
  auto result = Run({absl::FailedPreconditionError("lease abc is not held (job is RUNNING)")});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(result.status().message(), "not publishing: lease abc is not held (job is RUNNING)");
  EXPECT_EQ(ReadFile(out_ + "/manifest.json").value(), "the newer attempt's");
  EXPECT_FALSE(fs::exists(out_ + "/model.safetensors"));
}

// The lease went elsewhere while the files went up: no manifest vouches for them.
TEST_F(Fence, AnAttemptThatLostItsLeaseWhilePublishingWritesNoManifest) {
  auto result = Run({absl::OkStatus(), absl::FailedPreconditionError("lease abc is not held")});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(result.status().message(), "not writing the manifest: lease abc is not held");
  EXPECT_TRUE(fs::exists(out_ + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(out_ + "/manifest.json"));
}

}  // namespace
}  // namespace shears::worker
