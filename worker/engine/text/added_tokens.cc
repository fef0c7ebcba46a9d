#include "worker/engine/text/added_tokens.h"

namespace shears::engine {

void AddedTokens::Add(const std::string& content, int64_t id) {
  if (content.empty()) return;
  int node = 0;
  for (unsigned char c : content) {
    auto it = nodes_[node].next.find(c);
    if (it == nodes_[node].next.end()) {
      nodes_.emplace_back();
      it = nodes_[node].next.emplace(c, static_cast<int>(nodes_.size()) - 1).first;
    }
    node = it->second;
  }
  nodes_[node].id = id;
}

std::vector<AddedTokens::Piece> AddedTokens::Split(const std::string& text) const {
  std::vector<Piece> out;
  size_t start = 0, i = 0;
  while (i < text.size()) {
    // The longest token starting at i.
    size_t longest = 0;
    int64_t id = -1;
    for (size_t j = i, node = 0; j < text.size(); ++j) {
      auto it = nodes_[node].next.find(static_cast<unsigned char>(text[j]));
      if (it == nodes_[node].next.end()) break;
      node = static_cast<size_t>(it->second);
      if (nodes_[node].id >= 0) longest = j + 1 - i, id = nodes_[node].id;
    }
    if (longest == 0) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), -1});
    out.push_back({"", id});
    i += longest;
    start = i;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

}  // namespace shears::engine
