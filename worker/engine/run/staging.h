#pragma once
// Where a run keeps intermediate models: beside the output, never inside it.

#include <string>

#include "worker/engine/api/options.h"

namespace shears::engine {

// ".NAME.what" beside options.output_dir; kept while a run may resume.
std::string StagingDir(const PruneOptions& options, const std::string& what);

}  // namespace shears::engine
