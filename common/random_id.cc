#include "common/random_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "absl/strings/escaping.h"

namespace shears {

std::string RandomId() {
  char bytes[16];
  size_t filled = 0;
  while (filled < sizeof bytes) {
    const ssize_t n = getrandom(bytes + filled, sizeof bytes - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // Only a kernel without getrandom (before 3.17) gets here; an id that could be guessed is
      // worse than no server.
      std::cerr << "getrandom failed: errno " << errno << std::endl;
      std::abort();
    }
    filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof bytes));
}

}  // namespace shears
