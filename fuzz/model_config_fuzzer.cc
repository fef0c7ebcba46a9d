// config.json as a model repository ships it: JSON of any shape, then the fields Shears reads.
#include <nlohmann/json.hpp>

#include "worker/engine/io/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto json = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  auto config = shears::engine::ModelConfig::Parse(json);
  (void)config;
  return 0;
}
