#pragma once
// Identifiers nobody can guess: job and lease ids are capabilities of a sort (a lease id lets its
// holder complete the job), so they come from the kernel's CSPRNG, never from a seeded generator.

#include <string>

namespace shears {

// 128 random bits as 32 lower-case hex digits, from getrandom(2).
std::string RandomId();

}  // namespace shears
