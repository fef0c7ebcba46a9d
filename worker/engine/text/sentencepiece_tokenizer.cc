#include "worker/engine/text/sentencepiece_tokenizer.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/engine/text/pair_merge.h"
#include "worker/engine/text/utf8.h"

namespace shears::engine {
namespace {

// Just enough of the protobuf wire format to walk sentencepiece_model.proto's messages.
class WireReader {
 public:
  explicit WireReader(const std::string& bytes) : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}
  bool done() const { return p_ >= end_; }
  bool ok() const { return ok_; }

  // Reads the next field's number and wire type; false at the end or on bad data.
  bool Next(int* field, int* wire) {
    if (done() || !ok_) return false;
    uint64_t key = Varint();
    *field = static_cast<int>(key >> 3);
    *wire = static_cast<int>(key & 7);
    return ok_;
  }
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) break;
      const uint8_t b = static_cast<uint8_t>(*p_++);
      v |= uint64_t(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    ok_ = false;
    return 0;
  }
  std::string Bytes() {
    const uint64_t n = Varint();
    if (!ok_ || n > uint64_t(end_ - p_)) {
      ok_ = false;
      return "";
    }
    std::string out(p_, n);
    p_ += n;
    return out;
  }
  float Fixed32Float() {
    float f = 0;
    if (end_ - p_ < 4) {
      ok_ = false;
      return 0;
    }
    std::memcpy(&f, p_, 4);
    p_ += 4;
    return f;
  }
  void Skip(int wire) {
    switch (wire) {
      case 0: Varint(); break;
      case 1: p_ += 8; break;
      case 2: Bytes(); break;
      case 5: p_ += 4; break;
      default: ok_ = false;
    }
    if (p_ > end_) ok_ = false;
  }

 private:
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

constexpr int kNormal = 1, kUnknown = 2, kUserDefined = 4, kByte = 6;
constexpr int kModelTypeBpe = 2;
const std::string kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

}  // namespace

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromModelProto(
    const std::string& proto, const std::string& path, bool add_bos, bool add_eos) {
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  t->add_bos_ = add_bos;
  t->add_eos_ = add_eos;
  int model_type = 1;  // UNIGRAM, the proto's default
  std::string normalizer = "nmt_nfkc";
  WireReader model(proto);
  int field, wire;
  while (model.Next(&field, &wire)) {
    if (field == 1 && wire == 2) {  // ModelProto.pieces
      const std::string bytes = model.Bytes();  // the reader points into it
      WireReader p(bytes);
      Piece piece;
      while (p.Next(&field, &wire)) {
        if (field == 1 && wire == 2) piece.text = p.Bytes();
        else if (field == 2 && wire == 5) piece.score = p.Fixed32Float();
        else if (field == 3 && wire == 0) piece.type = static_cast<int>(p.Varint());
        else p.Skip(wire);
      }
      if (!p.ok()) return absl::DataLossError(absl::StrCat(path, ": a corrupt piece"));
      t->pieces_.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {  // trainer_spec
      const std::string bytes = model.Bytes();
      WireReader s(bytes);
      while (s.Next(&field, &wire)) {
        if (field == 3 && wire == 0) model_type = static_cast<int>(s.Varint());
        else if (field == 35 && wire == 0) t->byte_fallback_ = s.Varint() != 0;
        else if (field == 40 && wire == 0) t->unk_id_ = static_cast<int32_t>(s.Varint());
        else if (field == 41 && wire == 0) t->bos_id_ = static_cast<int32_t>(s.Varint());
        else if (field == 42 && wire == 0) t->eos_id_ = static_cast<int32_t>(s.Varint());
        else s.Skip(wire);
      }
    } else if (field == 3 && wire == 2) {  // normalizer_spec
      const std::string bytes = model.Bytes();
      WireReader n(bytes);
      while (n.Next(&field, &wire)) {
        if (field == 1 && wire == 2) normalizer = n.Bytes();
        else if (field == 3 && wire == 0) t->add_dummy_prefix_ = n.Varint() != 0;
        else if (field == 4 && wire == 0) t->remove_extra_whitespaces_ = n.Varint() != 0;
        else n.Skip(wire);
      }
    } else {
      model.Skip(wire);
    }
  }
  if (!model.ok() || t->pieces_.empty()) return absl::DataLossError(absl::StrCat(path, ": not a SentencePiece model"));
  if (model_type != kModelTypeBpe) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": SentencePiece model type ", model_type,
                                                   " is not supported (supported: BPE, as Llama-2 uses)"));
  }
  // Llama-2 ships the identity normalizer; the others need SentencePiece's compiled char maps.
  if (normalizer != "identity") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": SentencePiece normalizer '", normalizer, "' is not supported (supported: identity)"));
  }
  std::fill(std::begin(t->byte_ids_), std::end(t->byte_ids_), -1);
  for (size_t id = 0; id < t->pieces_.size(); ++id) {
    const Piece& piece = t->pieces_[id];
    t->ids_.emplace(piece.text, static_cast<int64_t>(id));
    unsigned byte = 0;
    if (piece.type == kByte && std::sscanf(piece.text.c_str(), "<0x%02X>", &byte) == 1 && byte < 256) {
      t->byte_ids_[byte] = static_cast<int64_t>(id);
    }
  }
  return t;
}

int64_t SentencePieceTokenizer::MergeableId(const std::string& text) const {
  auto it = ids_.find(text);
  if (it == ids_.end()) return -1;
  const int type = pieces_[it->second].type;
  return type == kNormal || type == kUserDefined ? it->second : -1;
}

std::vector<int64_t> SentencePieceTokenizer::Encode(const std::string& text) const {
  // Normalise: optionally squeeze spaces, add the dummy prefix, make spaces visible.
  std::string input;
  if (remove_extra_whitespaces_) {
    bool space = true;  // drops leading spaces too
    for (char c : text) {
      if (c == ' ') {
        if (!space) input += c;
        space = true;
      } else {
        input += c;
        space = false;
      }
    }
    while (!input.empty() && input.back() == ' ') input.pop_back();
  } else {
    input = text;
  }
  std::string normalized;
  if (add_dummy_prefix_ && !input.empty()) normalized = kSpace;
  for (char c : input) {
    if (c == ' ') normalized += kSpace;
    else normalized += c;
  }

  // Adjacent pieces merge into the piece they join to, the highest score first.
  const auto merged = MergePairs(normalized, [&](std::string_view left, std::string_view right) -> std::optional<double> {
    const int64_t id = MergeableId(std::string(left.data(), left.size() + right.size()));  // adjacent in `normalized`
    if (id < 0) return std::nullopt;
    return pieces_[id].score;
  });

  std::vector<int64_t> out;
  if (add_bos_ && bos_id_ >= 0) out.push_back(bos_id_);
  for (const std::string_view symbol : merged) {
    const std::string piece(symbol);
    const int64_t id = MergeableId(piece);
    if (id >= 0) {
      out.push_back(id);
    } else if (byte_fallback_) {
      for (unsigned char c : piece) out.push_back(byte_ids_[c] >= 0 ? byte_ids_[c] : unk_id_);
    } else {
      out.push_back(unk_id_);
    }
  }
  if (add_eos_ && eos_id_ >= 0) out.push_back(eos_id_);
  return out;
}

}  // namespace shears::engine
