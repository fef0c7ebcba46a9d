// A calibration or evaluation dataset as a job names it: the first byte picks the reader (JSONL
// text, a .npy array of token ids, raw 16- or 32-bit ids), the rest is the file.
#include "fuzz/fuzz_files.h"
#include "worker/engine/runtime/runtime.h"
#include "worker/engine/text/dataset.h"
#include "worker/engine/text/tokenizer_factory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool configured = shears::engine::ConfigureRuntime(1, "cpu").ok();
  (void)configured;
  // Text goes through the bundled model's tokenizer.
  static const auto tokenizer = shears::engine::LoadTokenizer(SHEARS_SOURCE_DIR "/tests/data/tiny-llama");
  if (!tokenizer.ok() || size < 1) return 0;
  static const char* const kNames[] = {"data.jsonl", "ids.npy", "ids.bin", "ids.u32.bin", "text.txt"};
  const std::string path = shears::fuzz::WriteInput(kNames[data[0] % 5], data + 1, size - 1);
  auto ids = shears::engine::LoadTokenIds(path, tokenizer->get(), (*tokenizer)->vocab_size());
  if (ids.ok()) {
    auto windows = shears::engine::CalibrationWindows(*ids, 4, 8, 0);
    (void)windows;
  }
  return 0;
}
