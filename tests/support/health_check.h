#pragma once
// Health and reflection, spoken in raw protobuf bytes: the project has no generated code for them,
// and an operator's tools (grpc_health_probe, grpcurl) have none of ours.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <future>
#include <string>
#include <vector>

namespace shears::testing {

inline std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// grpc.health.v1.Health/Check of the whole server, in plaintext: the HealthCheckResponse bytes
// ("\x08\x01" SERVING, "\x08\x02" NOT_SERVING), or the call's error.
inline std::string HealthCheck(const std::string& address) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");  // HealthCheckRequest{service: ""} encodes to no bytes
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status st) { done.set_value(st); });
  grpc::Status st = done.get_future().get();
  return st.ok() ? ToString(response) : "error: " + st.error_message();
}

inline const std::string kServing("\x08\x01", 2);
inline const std::string kNotServing("\x08\x02", 2);

}  // namespace shears::testing
