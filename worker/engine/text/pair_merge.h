#pragma once
// The merge loop BPE and SentencePiece share: the characters of a word as a linked list, and the
// candidate merges of adjacent symbols in a heap, so the best pair goes first and, among equals,
// the leftmost, as a scan of the whole word would choose, in O(n log n) instead of O(n²).

#include <algorithm>
#include <optional>
#include <queue>
#include <string_view>
#include <vector>

#include "worker/engine/text/utf8.h"

namespace shears::engine {

// The symbols `text` ends as, in order: its UTF-8 characters merged pair by pair while
// `priority(left, right)` gives any adjacent pair a priority (higher merges first; nullopt: the
// pair never merges). The views point into `text`.
template <typename Priority>
std::vector<std::string_view> MergePairs(std::string_view text, const Priority& priority) {
  struct Symbol {
    int prev, next;
    size_t begin, length;  // in `text`; length 0 once merged into its left neighbour
  };
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::min(Utf8Length(static_cast<unsigned char>(text[i])), text.size() - i);
    symbols.push_back({static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1, i, n});
    i += n;
  }
  if (!symbols.empty()) symbols.back().next = -1;
  struct Candidate {
    double priority;
    int left, right;
    size_t length;  // of the joined pair, to notice one made stale by another merge
  };
  auto before = [](const Candidate& a, const Candidate& b) {
    return a.priority != b.priority ? a.priority < b.priority : a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(before)> agenda(before);
  auto piece = [&](int i) { return text.substr(symbols[i].begin, symbols[i].length); };
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    if (std::optional<double> p = priority(piece(left), piece(right))) {
      agenda.push({*p, left, right, symbols[left].length + symbols[right].length});
    }
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) consider(static_cast<int>(i), static_cast<int>(i) + 1);
  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.length == 0 || right.length == 0 || left.next != top.right || left.length + right.length != top.length) {
      continue;  // one side was merged into something else since
    }
    left.length += right.length;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.length = 0;
    consider(left.prev, top.left);
    consider(top.left, left.next);
  }
  std::vector<std::string_view> out;
  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) out.push_back(piece(i));
  return out;
}

}  // namespace shears::engine
