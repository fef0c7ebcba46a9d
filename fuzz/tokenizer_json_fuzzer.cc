// tokenizer.json from a model repository, loaded and then encoding a fixed text: the BPE model,
// normalizers, pre-tokenizers (their regular expressions included) and added tokens.
#include "fuzz/fuzz_files.h"
#include "worker/engine/text/tokenizer_factory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shears::fuzz::LoadAndEncode("tokenizer.json", data, size, shears::engine::LoadTokenizer);
  return 0;
}
