#pragma once
// Unary callback handlers whose work is quick: do it inline and finish at once.

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "common/rpc_status.h"

namespace shears::server {

inline grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Runs `fill` (returning absl::Status) and finishes the call with its status.
template <typename Fill>
grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context, Fill fill) {
  return FinishNow(context, fill());
}

}  // namespace shears::server
