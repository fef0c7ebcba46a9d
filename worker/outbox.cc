#include "worker/outbox.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "worker/attempt/pipe_messages.h"

namespace shears::worker {
namespace fs = std::filesystem;
namespace {

std::string OutboxDir(const std::string& work_dir) { return (fs::path(work_dir) / "outbox").string(); }

std::string PathOf(const std::string& work_dir, const std::string& lease_id, const char* extension) {
  return (fs::path(OutboxDir(work_dir)) / absl::StrCat(lease_id, extension)).string();
}

// The events of a file written by Append, up to the last whole one.
std::vector<v1::JobEvent> ReadEvents(const std::string& path) {
  std::vector<v1::JobEvent> events;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return events;
  for (;;) {
    v1::JobEvent event;
    auto got = ReadMessage(fd, &event);
    if (!got.ok() || !*got) break;  // the end, or an append a kill cut short
    events.push_back(std::move(event));
  }
  close(fd);
  return events;
}

}  // namespace

Outbox::Outbox(const std::string& work_dir, const std::string& job_id, const std::string& lease_id)
    : work_dir_(work_dir),
      record_path_(PathOf(work_dir, lease_id, ".pb")),
      events_path_(PathOf(work_dir, lease_id, ".events")) {
  std::error_code ec;
  fs::create_directories(OutboxDir(work_dir), ec);
  absl::MutexLock lock(&mu_);
  events_fd_ = open(events_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  record_.set_job_id(job_id);
  record_.set_lease_id(lease_id);
  Save().IgnoreError();  // without it, Append fails and says why
}

Outbox::~Outbox() {
  absl::MutexLock lock(&mu_);
  if (events_fd_ >= 0) close(events_fd_);
}

absl::Status Outbox::Save() { return WriteFileAtomically(record_path_, record_.SerializeAsString()); }

absl::Status Outbox::Append(const v1::JobEvent& event) {
  absl::MutexLock lock(&mu_);
  if (events_fd_ < 0) return absl::UnavailableError(absl::StrCat("open ", events_path_, ": ", strerror(errno)));
  // No fsync: what this guards against is the worker's death, after which the kernel still has it.
  return WriteMessage(events_fd_, event);
}

absl::Status Outbox::AddBatch(const v1::ReportEventsRequest& batch) {
  absl::MutexLock lock(&mu_);
  *record_.add_batches() = batch;
  record_.set_batched_events(record_.batched_events() + batch.events_size());
  record_.set_last_batch(batch.batch());
  return Save();
}

absl::Status Outbox::Done(int64_t batch) {
  absl::MutexLock lock(&mu_);
  auto* batches = record_.mutable_batches();
  batches->erase(std::remove_if(batches->begin(), batches->end(),
                                [batch](const v1::ReportEventsRequest& b) { return b.batch() == batch; }),
                 batches->end());
  return Save();
}

absl::Status Outbox::SetOutcome(const v1::CompleteJobRequest& outcome) {
  absl::MutexLock lock(&mu_);
  *record_.mutable_outcome() = outcome;
  return Save();
}

void Outbox::Remove() {
  absl::MutexLock lock(&mu_);
  Remove(work_dir_, record_.lease_id());
}

std::vector<Outbox::Left> Outbox::FindLeft(const std::string& work_dir) {
  std::vector<std::pair<fs::file_time_type, Left>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(OutboxDir(work_dir), ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::StrContains(name, ".tmp-")) {  // a record write the worker's death cut short
      fs::remove(entry.path(), ec);
      continue;
    }
    if (entry.path().extension() != ".pb") continue;
    auto bytes = ReadFile(entry.path().string());
    Left left;
    if (!bytes.ok() || !left.record.ParseFromString(*bytes) || left.record.lease_id().empty()) {
      std::cerr << "shears-worker: dropping unreadable outbox " << entry.path() << std::endl;
      fs::remove(entry.path(), ec);
      continue;
    }
    auto events = ReadEvents(PathOf(work_dir, left.record.lease_id(), ".events"));
    const size_t batched = static_cast<size_t>(std::max<int64_t>(0, left.record.batched_events()));
    if (events.size() > batched) left.unbatched.assign(events.begin() + batched, events.end());
    found.emplace_back(entry.last_write_time(ec), std::move(left));
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Left> out;
  for (auto& [time, left] : found) out.push_back(std::move(left));
  return out;
}

void Outbox::Remove(const std::string& work_dir, const std::string& lease_id) {
  std::error_code ec;
  fs::remove(PathOf(work_dir, lease_id, ".pb"), ec);
  fs::remove(PathOf(work_dir, lease_id, ".events"), ec);
}

}  // namespace shears::worker
