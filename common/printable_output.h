#pragma once
// What a server or a worker reports (job errors, progress messages, labels) reaches an operator's
// terminal through shearsctl. A caller could put escape sequences in it that retitle the window,
// rewrite earlier lines or worse, so text bound for a terminal passes through this filter: it drops
// C0 control characters but newline and tab, DEL, and C1 controls (U+0080..U+009F in UTF-8).

#include <ostream>
#include <streambuf>
#include <string>

namespace shears {

// The text with those characters removed.
std::string PrintableText(const std::string& text);

// Filters everything written to `stream` from now until the object is destroyed.
class PrintableOutput {
 public:
  explicit PrintableOutput(std::ostream& stream);
  ~PrintableOutput();
  PrintableOutput(const PrintableOutput&) = delete;
  PrintableOutput& operator=(const PrintableOutput&) = delete;

 private:
  class Filter;
  std::ostream& stream_;
  std::streambuf* original_;
  Filter* filter_;
};

}  // namespace shears
