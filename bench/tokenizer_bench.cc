// How long tokenizing takes where the merge loop used to be quadratic: one word of 40,000
// characters (no spaces, so the pre-tokenizer leaves it whole), against the same characters as
// 1,000 words of 40, which costs the same with a merge that is linear in the word. Prints both.
//
//   tokenizer_bench MODEL_DIR
#include <chrono>
#include <cstdio>
#include <string>

#include "bench/format.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace {

double SecondsToEncode(const shears::engine::Tokenizer& tokenizer, const std::string& text, size_t* ids) {
  const auto start = std::chrono::steady_clock::now();
  *ids = tokenizer.Encode(text).size();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tokenizer_bench MODEL_DIR\n");
    return 2;
  }
  auto tokenizer = shears::engine::LoadTokenizer(argv[1]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  const std::string letters = "inthebeginninggodcreatedtheheavenandtheearth";
  std::string word, words;
  while (word.size() < 40000) word += letters;
  word.resize(40000);
  for (size_t i = 0; i < word.size(); i += 40) words += (i ? " " : "") + word.substr(i, 40);
  size_t long_ids = 0, short_ids = 0;
  const double long_seconds = SecondsToEncode(**tokenizer, word, &long_ids);
  const double short_seconds = SecondsToEncode(**tokenizer, words, &short_ids);
  std::printf("| text | characters | ids | seconds |\n|---|---|---|---|\n");
  std::printf("| one word | %zu | %zu | %s |\n", word.size(), long_ids, shears::bench::Format("%.3f", long_seconds).c_str());
  std::printf("| 1,000 words of 40 | %zu | %zu | %s |\n", words.size(), short_ids,
              shears::bench::Format("%.3f", short_seconds).c_str());
  std::printf("ratio one word / short words: %s (target: the one word under 1 s)\n",
              shears::bench::Format("%.2f", long_seconds / short_seconds).c_str());
  return long_seconds < 1.0 ? 0 : 1;
}
