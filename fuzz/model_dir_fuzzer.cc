// A sharded model directory's model.safetensors.index.json, beside a config.json and one small
// shard: which files the index names, and what ModelDir makes of them.
#include <filesystem>

#include "fuzz/fuzz_files.h"
#include "worker/engine/io/model_dir.h"
#include "worker/engine/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  const fs::path dir = shears::fuzz::ScratchDir() / "model";
  static const bool made = [&] {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << R"({"model_type": "llama", "num_hidden_layers": 1})";
    // One shard with one tensor, written by hand: 8-byte length, header, 4 bytes of data.
    const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    std::string shard(8, '\0');
    for (int i = 0; i < 8; ++i) shard[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    shard += header + std::string(4, '\0');
    std::ofstream(dir / "model-00001-of-00001.safetensors", std::ios::binary) << shard;
    return true;
  }();
  (void)made;
  std::ofstream(dir / shears::engine::kIndexFile, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), size);
  auto opened = shears::engine::ModelDir::Open(dir.string());
  if (opened.ok()) (*opened)->Find("w");
  return 0;
}
