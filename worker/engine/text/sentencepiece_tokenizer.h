#pragma once
// SentencePiece tokenizer.model files with a BPE model (Llama-2 style): the model protobuf read
// directly, and SentencePiece's encoding — merge the adjacent pair whose joined piece scores
// highest, leftmost first; pieces outside the vocabulary fall back to bytes. Debian's
// libsentencepiece cannot be used: it carries its own copy of protobuf-lite, whose symbols clash
// with the libprotobuf that LibTorch and gRPC load into the same process.

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/text/tokenizer.h"

namespace shears::engine {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `add_bos`/`add_eos` as tokenizer_config.json says (Hugging Face's LlamaTokenizer adds BOS).
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromModelProto(const std::string& proto,
                                                                                const std::string& path,
                                                                                bool add_bos, bool add_eos);
  std::vector<int64_t> Encode(const std::string& text) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }

 private:
  struct Piece {
    std::string text;
    float score = 0;
    int type = 1;  // NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
  };
  SentencePieceTokenizer() = default;
  // The id of a piece that may appear in the output (NORMAL or USER_DEFINED), or -1.
  int64_t MergeableId(const std::string& text) const;

  std::vector<Piece> pieces_;
  std::unordered_map<std::string, int64_t> ids_;
  int64_t byte_ids_[256];
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  int64_t unk_id_ = 0, bos_id_ = 1, eos_id_ = 2;
  bool add_bos_ = true, add_eos_ = false;
};

}  // namespace shears::engine
