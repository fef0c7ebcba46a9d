#pragma once
// Numbers for the benchmarks' Markdown tables.

#include <cstdio>
#include <string>

namespace shears::bench {

// `v` printed with a printf format such as "%.2f".
inline std::string Format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace shears::bench
