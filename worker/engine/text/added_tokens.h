#pragma once
// tokenizer.json's "added_tokens": strings that stand for one id wherever they occur in the raw
// text (special tokens such as <|begin_of_text|>, Gemma's thousands of <unusedN>), found
// leftmost-longest as Hugging Face's AddedVocabulary does, in one pass over a trie.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace shears::engine {

class AddedTokens {
 public:
  void Add(const std::string& content, int64_t id);

  // `text` cut at the added tokens: ordinary stretches (id -1) and the tokens (their id), in order.
  struct Piece {
    std::string text;
    int64_t id = -1;
  };
  std::vector<Piece> Split(const std::string& text) const;

 private:
  struct Node {
    std::unordered_map<unsigned char, int> next;
    int64_t id = -1;  // a token ends here
  };
  std::vector<Node> nodes_ = std::vector<Node>(1);
};

}  // namespace shears::engine
