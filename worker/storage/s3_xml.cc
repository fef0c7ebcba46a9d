#include "worker/storage/s3_xml.h"

#include "absl/strings/numbers.h"

namespace shears::worker {

std::string XmlValue(const std::string& xml, const std::string& tag, size_t* from) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  const size_t start = xml.find(open, from != nullptr ? *from : 0);
  if (start == std::string::npos) return "";
  const size_t end = xml.find(close, start);
  if (end == std::string::npos) return "";
  if (from != nullptr) *from = end + close.size();
  std::string value = xml.substr(start + open.size(), end - start - open.size());
  for (size_t at; (at = value.find("&quot;")) != std::string::npos;) value.replace(at, 6, "\"");
  return value;
}

S3ListPage ParseListPage(const std::string& xml) {
  S3ListPage page;
  size_t at = 0;
  for (;;) {
    const std::string contents = XmlValue(xml, "Contents", &at);
    if (contents.empty()) break;
    S3Object object{XmlValue(contents, "Key"), XmlValue(contents, "ETag"), 0};
    if (!absl::SimpleAtoi(XmlValue(contents, "Size"), &object.size) || object.size < 0) object.size = 0;
    page.objects.push_back(std::move(object));
  }
  if (XmlValue(xml, "IsTruncated") == "true") page.next_token = XmlValue(xml, "NextContinuationToken");
  return page;
}

}  // namespace shears::worker
