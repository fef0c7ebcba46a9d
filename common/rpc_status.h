#pragma once
// absl::Status is used everywhere inside; these are the only conversions at the gRPC edge.

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace shears {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace shears
