#pragma once
// The few parts of S3's XML answers Shears reads (ListObjectsV2 pages, a multipart upload's id),
// found by tag rather than by an XML parser: the answers are flat, and a store that sends
// something else gets empty values, never a crash (fuzz/s3_xml_fuzzer.cc).

#include <cstdint>
#include <string>
#include <vector>

namespace shears::worker {

// The text of the first <tag>...</tag> in `xml` at or after *from (then moved past it); entities
// left as they are except &quot;. Empty when there is none.
std::string XmlValue(const std::string& xml, const std::string& tag, size_t* from = nullptr);

struct S3Object {
  std::string key;
  std::string etag;
  int64_t size = 0;
};

struct S3ListPage {
  std::vector<S3Object> objects;
  std::string next_token;  // empty on the last page
};

// One ListObjectsV2 answer.
S3ListPage ParseListPage(const std::string& xml);

}  // namespace shears::worker
