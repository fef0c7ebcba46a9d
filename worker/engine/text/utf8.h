#pragma once
// UTF-8 helpers the tokenizers share.

#include <cstddef>
#include <string>

namespace shears::engine {

// Bytes in the UTF-8 sequence that starts with `lead`; 1 for a byte that cannot start one, so
// that malformed text still advances.
inline size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Where `text` stops being well-formed UTF-8 (a stray continuation byte, a truncated or overlong
// sequence, a surrogate or a code point past U+10FFFF); std::string::npos when it never does.
inline size_t FirstInvalidUtf8(const std::string& text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len;
    unsigned int cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 0x6) {
      len = 2, cp = c & 0x1F;
    } else if ((c >> 4) == 0xE) {
      len = 3, cp = c & 0x0F;
    } else if ((c >> 3) == 0x1E) {
      len = 4, cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] >> 6) != 0x2) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static constexpr unsigned int kLeast[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kLeast[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

inline bool Utf8Valid(const std::string& text) { return FirstInvalidUtf8(text) == std::string::npos; }

}  // namespace shears::engine
