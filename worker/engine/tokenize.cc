#include "worker/engine/tokenize.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/text/tokenizer_factory.h"
#include "worker/engine/text/utf8.h"

namespace shears::engine {

absl::StatusOr<Tokenized> Tokenize(const std::string& model_dir, const std::string& text) {
  // Refused as a dataset's text is, so that the ids shown are the ids a job would use.
  if (const size_t bad = FirstInvalidUtf8(text); bad != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("text is not valid UTF-8 at byte ", bad));
  }
  SHEARS_ASSIGN_OR_RETURN(ChosenTokenizer chosen, ChooseTokenizer(model_dir));
  return Tokenized{chosen.file, chosen.note, chosen.tokenizer->Encode(text)};
}

}  // namespace shears::engine
