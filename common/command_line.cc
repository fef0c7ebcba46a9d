#include "common/command_line.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace shears {

absl::StatusOr<CommandLine> CommandLine::Parse(int argc, const char* const* argv,
                                               const std::set<std::string>& bool_flags) {
  CommandLine cl;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) cl.words_.emplace_back(argv[i]);
      break;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      cl.words_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (bool_flags.count(name)) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    cl.flags_[name].push_back(value);
  }
  return cl;
}

std::optional<std::string> CommandLine::Get(const std::string& flag) const {
  auto it = flags_.find(flag);
  if (it == flags_.end()) return std::nullopt;
  return it->second.back();
}

std::string CommandLine::GetOr(const std::string& flag, const std::string& fallback) const {
  return Get(flag).value_or(fallback);
}

std::vector<std::string> CommandLine::GetAll(const std::string& flag) const {
  auto it = flags_.find(flag);
  return it == flags_.end() ? std::vector<std::string>{} : it->second;
}

absl::StatusOr<int64_t> CommandLine::GetInt(const std::string& flag, int64_t fallback) const {
  auto v = Get(flag);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": not an integer: '", *v, "'"));
  }
  return out;
}

absl::StatusOr<double> CommandLine::GetDouble(const std::string& flag, double fallback) const {
  auto v = Get(flag);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": not a number: '", *v, "'"));
  }
  return out;
}

absl::StatusOr<absl::Duration> CommandLine::GetDuration(const std::string& flag,
                                                        absl::Duration fallback) const {
  auto v = Get(flag);
  if (!v) return fallback;
  double seconds;
  if (absl::SimpleAtod(*v, &seconds)) return absl::Seconds(seconds);
  absl::Duration d;
  if (!absl::ParseDuration(*v, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not a duration (e.g. 30s, 500ms): '", *v, "'"));
  }
  return d;
}

absl::Status CommandLine::CheckKnown(const std::set<std::string>& known) const {
  for (const auto& [name, values] : flags_) {
    if (!known.count(name)) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
  }
  return absl::OkStatus();
}

}  // namespace shears
