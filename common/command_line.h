#pragma once
// Command lines of the form `prog [words...]` with `--flag value` or `--flag=value` anywhere, so that
// global flags work before or after a subcommand.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace shears {

class CommandLine {
 public:
  // `bool_flags` take no value; every other flag takes the next word (or the text after '=').
  static absl::StatusOr<CommandLine> Parse(int argc, const char* const* argv,
                                           const std::set<std::string>& bool_flags);

  // Words that are not flags, in order (subcommand first).
  const std::vector<std::string>& words() const { return words_; }
  bool Has(const std::string& flag) const { return flags_.count(flag) > 0; }
  // The last value given for the flag.
  std::optional<std::string> Get(const std::string& flag) const;
  std::string GetOr(const std::string& flag, const std::string& fallback) const;
  // Every value of a repeatable flag.
  std::vector<std::string> GetAll(const std::string& flag) const;

  absl::StatusOr<int64_t> GetInt(const std::string& flag, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& flag, double fallback) const;
  // "30s", "500ms", "2m", or a plain number of seconds.
  absl::StatusOr<absl::Duration> GetDuration(const std::string& flag, absl::Duration fallback) const;

  // Fails naming the first flag that is not in `known`.
  absl::Status CheckKnown(const std::set<std::string>& known) const;

 private:
  std::vector<std::string> words_;
  std::map<std::string, std::vector<std::string>> flags_;
};

}  // namespace shears
