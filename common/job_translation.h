#pragma once
// The one translation between the public protos and the engine's plain structs (engine/api): a
// JobSpec into the PruneOptions the job rules and the engine read, and the engine's reports into
// the JobResult and JobEvents that clients see. No LibTorch here: the server uses it too.

#include <string>

#include "absl/status/statusor.h"
#include "shears/v1/job.pb.h"
#include "worker/engine/api/options.h"
#include "worker/engine/api/report.h"

namespace shears {

// The options `spec` asks for. The dataset paths hold the spec's URIs (the worker replaces them
// with the local files it fetched); model_dir, output_dir and device are left to the runner.
// INVALID_ARGUMENT naming the field ("spec.method: ...") for an enum value this build does not know.
absl::StatusOr<engine::PruneOptions> EngineOptions(const v1::JobSpec& spec);

// The engine's method `method` names; INVALID_ARGUMENT naming `field` when there is none.
absl::StatusOr<engine::Method> EngineMethod(v1::Method method, const std::string& field);
v1::Method ToProto(engine::Method method);
v1::Structure ToProto(engine::Structure structure);

v1::LayerResult ToProto(const engine::LayerReport& layer);
// `per_neuron` adds the per-neuron vectors, which the result keeps and events leave out.
v1::RedundancyMetrics ToProto(const engine::RedundancyReport& report, bool per_neuron);
// What the job reports when it is done; the artifacts are the publisher's to add.
v1::JobResult ResultOf(const engine::PruneReport& report, const v1::JobSpec& spec);
// Appends the stage times to a result's or a progress event's list.
void AddStageTimes(const std::vector<engine::StageTime>& stages,
                   google::protobuf::RepeatedPtrField<v1::StageTime>& out);

}  // namespace shears
