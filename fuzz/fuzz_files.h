#pragma once
// What the fuzz targets share: the parsers under test read files, so each input is written to a
// private scratch directory first (in memory where /dev/shm allows).

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace shears::fuzz {

// A directory of this process's own, made once.
inline const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::exists("/dev/shm", ec) ? "/dev/shm" : "/tmp";
    auto dir = base / ("shears-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir, ec);
    return dir;
  }();
  return dir;
}

// Writes `size` bytes of `data` to `name` in the scratch directory; returns its path.
inline std::string WriteInput(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (ScratchDir() / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  return path;
}

// Writes the input as `file` (tokenizer.json, tokenizer.model) of a model directory of its own and
// loads the tokenizer the engine would choose there; one that loads encodes a fixed text.
template <typename LoadTokenizer>
void LoadAndEncode(const std::string& file, const uint8_t* data, size_t size, LoadTokenizer load) {
  const std::filesystem::path dir = ScratchDir() / ("model-" + file);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  auto tokenizer = load(dir.string());
  if (tokenizer.ok()) (*tokenizer)->Encode("In the beginning God created the heaven and the earth. 123 ünïcødé <|endoftext|>");
}

}  // namespace shears::fuzz
