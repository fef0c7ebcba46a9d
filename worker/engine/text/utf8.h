#pragma once
// UTF-8 helpers the tokenizers share.

#include <cstddef>

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

}  // namespace shears::engine
