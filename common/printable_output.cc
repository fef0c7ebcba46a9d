#include "common/printable_output.h"

#include <sstream>

namespace shears {
namespace {

// C0 controls but newline and tab, and DEL, are single bytes; C1 controls are the two bytes 0xC2
// 0x80..0x9F, of which the filter holds the 0xC2 back until the next byte shows what it starts.
bool IsC0OrDel(unsigned char c) { return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f; }
bool IsC1Second(unsigned char c) { return c >= 0x80 && c <= 0x9f; }

}  // namespace

class PrintableOutput::Filter final : public std::streambuf {
 public:
  explicit Filter(std::streambuf* sink) : sink_(sink) {}
  ~Filter() override { Release(); }

 protected:
  int_type overflow(int_type ch) override {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    const auto c = static_cast<unsigned char>(traits_type::to_char_type(ch));
    if (held_c2_) {
      held_c2_ = false;
      if (IsC1Second(c)) return ch;  // a C1 control: both bytes dropped
      if (sink_->sputc(static_cast<char>(0xc2)) == traits_type::eof()) return traits_type::eof();
    }
    if (c == 0xc2) {
      held_c2_ = true;
      return ch;
    }
    if (IsC0OrDel(c)) return ch;
    return sink_->sputc(static_cast<char>(c)) == traits_type::eof() ? traits_type::eof() : ch;
  }
  int sync() override {
    // A lone 0xC2 at a flush stays held: its next byte decides, and a flush mid-character is common.
    return sink_->pubsync();
  }

 private:
  void Release() {
    if (held_c2_) sink_->sputc(static_cast<char>(0xc2));
    held_c2_ = false;
    sink_->pubsync();
  }
  std::streambuf* const sink_;
  bool held_c2_ = false;
};

std::string PrintableText(const std::string& text) {
  std::ostringstream out;
  {
    PrintableOutput filter(out);
    out << text;
  }
  return out.str();
}

PrintableOutput::PrintableOutput(std::ostream& stream)
    : stream_(stream), original_(stream.rdbuf()), filter_(new Filter(original_)) {
  stream_.rdbuf(filter_);
}

PrintableOutput::~PrintableOutput() {
  stream_.flush();
  stream_.rdbuf(original_);
  delete filter_;
}

}  // namespace shears
