#include "worker/engine/model/architecture_factory.h"

#include "common/status_macros.h"
#include "worker/engine/model/gemma.h"
#include "worker/engine/model/gpt2.h"
#include "worker/engine/model/llama.h"
#include "worker/engine/model/opt.h"
#include "worker/engine/model/phi3.h"

namespace shears::engine {

absl::StatusOr<std::unique_ptr<Architecture>> MakeArchitecture(const nlohmann::json& config) {
  SHEARS_ASSIGN_OR_RETURN(ModelConfig parsed, ModelConfig::Parse(config));
  switch (parsed.family) {
    case Family::kLlama:
      return std::unique_ptr<Architecture>(new Llama(std::move(parsed)));
    case Family::kGemma:
      return std::unique_ptr<Architecture>(new Gemma(std::move(parsed)));
    case Family::kPhi3:
      return std::unique_ptr<Architecture>(new Phi3(std::move(parsed)));
    case Family::kGpt2:
      return std::unique_ptr<Architecture>(new Gpt2(std::move(parsed)));
    case Family::kOpt:
      return std::unique_ptr<Architecture>(new Opt(std::move(parsed)));
  }
  return absl::InternalError("unknown model family");
}

}  // namespace shears::engine
