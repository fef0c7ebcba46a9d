// A safetensors file as a worker downloads it: the 8-byte header length, the JSON header, the data.
// Every entry is checked against the file before any byte is used.
#include "fuzz/fuzz_files.h"
#include "worker/engine/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = shears::fuzz::WriteInput("model.safetensors", data, size);
  auto file = shears::engine::SafetensorsFile::Open(path);
  if (file.ok()) {
    for (const auto& info : (*file)->tensors()) {
      auto bytes = (*file)->Data(info);
      volatile uint8_t sum = 0;
      for (uint8_t b : bytes) sum = sum + b;  // every byte the header claims is in the file
    }
  }
  return 0;
}
