#include "worker/engine/tokenize.h"

#include "common/status_macros.h"
#include "worker/engine/text/tokenizer_factory.h"

namespace shears::engine {

absl::StatusOr<Tokenized> Tokenize(const std::string& model_dir, const std::string& text) {
  SHEARS_ASSIGN_OR_RETURN(ChosenTokenizer chosen, ChooseTokenizer(model_dir));
  return Tokenized{chosen.file, chosen.note, chosen.tokenizer->Encode(text)};
}

}  // namespace shears::engine
