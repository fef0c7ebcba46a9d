// A JobSpec in protobuf JSON, as `run-local --spec` and clients send it: parsed, defaulted and
// checked by the same rules the server applies at CreateJob.
#include "common/job_spec.h"
#include "common/proto_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shears::v1::JobSpec spec;
  if (!shears::FromJson(std::string(reinterpret_cast<const char*>(data), size), "spec", &spec).ok()) return 0;
  shears::ApplySpecDefaults(spec);
  (void)shears::ValidateSpec(spec);
  return 0;
}
