// What an S3-compatible store answers: a ListObjectsV2 page, a multipart upload's id.
#include <string>

#include "worker/storage/s3_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string xml(reinterpret_cast<const char*>(data), size);
  auto page = shears::worker::ParseListPage(xml);
  (void)page;
  (void)shears::worker::XmlValue(xml, "UploadId");
  return 0;
}
