#pragma once
// Every bound the service puts on what a caller sends, in one place; docs/operations.md#limits
// lists them for users. Past one, a call fails with INVALID_ARGUMENT (the request itself is too
// big) or RESOURCE_EXHAUSTED (a job's total is reached), naming the field and the limit.

#include <cstddef>
#include <cstdint>

namespace shears {

// A JobSpec, serialized: room for every option, the labels and long URIs several times over.
inline constexpr size_t kMaxSpecBytes = 64 << 10;
// Each URI the spec names.
inline constexpr size_t kMaxUriBytes = 4096;
// Labels: as many as a platform attaches (team, run, model, cost centre, ...), short values.
inline constexpr int kMaxLabels = 64;
inline constexpr size_t kMaxLabelKeyBytes = 63;
inline constexpr size_t kMaxLabelValueBytes = 256;
// CreateJobRequest.request_id.
inline constexpr size_t kMaxRequestIdBytes = 128;
// Events in one ReportEvents call (the worker sends batches of 256): one short transaction each.
inline constexpr int kMaxEventsPerCall = 1024;
// Events a worker may report for one job over all its attempts; a 7B job with evaluation reports
// a few thousand. State changes are always recorded.
inline constexpr int64_t kMaxEventsPerJob = 100000;
// The jobs of one ListJobs answer, serialized: a page ends early rather than pass it (its
// next_page_token goes on from there).
inline constexpr size_t kMaxListPageBytes = 4 << 20;

}  // namespace shears
