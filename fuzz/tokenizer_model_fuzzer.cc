// tokenizer.model (SentencePiece's protobuf, read by hand), loaded and then encoding a fixed text.
#include "fuzz/fuzz_files.h"
#include "worker/engine/text/tokenizer_factory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shears::fuzz::LoadAndEncode("tokenizer.model", data, size, shears::engine::LoadTokenizer);
  return 0;
}
