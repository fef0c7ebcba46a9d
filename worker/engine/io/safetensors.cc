#include "worker/engine/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace shears::engine {
namespace {

using nlohmann::json;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1}, {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

// A header larger than this is certainly corrupt, and parsing it would only waste memory.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status Corrupt(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": ", what));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<DType> ParseDType(const std::string& name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
}

const char* DTypeName(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.size;
  }
  return 0;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Reading

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::Status(errno == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                        absl::StrCat(path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": stat: ", std::strerror(errno)));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Corrupt(path, absl::StrCat("file is ", size, " bytes, too short for the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap: ", std::strerror(errno)));

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = static_cast<uint8_t*>(map);
  file->map_size_ = size;

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file->map_[i];
  if (header_len > size - 8 || header_len > kMaxHeaderBytes) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " exceeds the ", size - 8,
                                      " bytes that follow it"));
  }
  file->data_ = file->map_ + 8 + header_len;
  std::string header(reinterpret_cast<const char*>(file->map_ + 8), header_len);
  if (auto s = file->ParseHeader(header, size - 8 - header_len); !s.ok()) return s;
  return file;
}

absl::Status SafetensorsFile::ParseHeader(const std::string& header, uint64_t data_size) {
  json h = json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded()) return Corrupt(path_, "header is not valid JSON");
  if (!h.is_object()) return Corrupt(path_, "header is not a JSON object");

  for (const auto& [name, entry] : h.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Corrupt(path_, "__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) return Corrupt(path_, absl::StrCat("__metadata__.", k, " is not a string"));
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    auto where = [&, &name = name](const std::string& what) {
      return Corrupt(path_, absl::StrCat("tensor ", name, ": ", what));
    };
    if (!entry.is_object()) return where("entry is not an object");
    const auto dt = entry.find("dtype");
    const auto shape = entry.find("shape");
    const auto offsets = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) return where("missing dtype");
    if (shape == entry.end() || !shape->is_array()) return where("missing shape");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return where("data_offsets is not a pair of non-negative integers");
    }
    TensorInfo info;
    info.name = name;
    auto dtype = ParseDType(dt->get<std::string>());
    if (!dtype.ok()) return where(std::string(dtype.status().message()));
    info.dtype = *dtype;
    uint64_t bytes = DTypeSize(info.dtype);
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) return where("shape has a dimension that is not a non-negative integer");
      const uint64_t dim = d.get<uint64_t>();
      if (__builtin_mul_overflow(bytes, dim, &bytes)) return where("shape is too large");
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    info.begin = (*offsets)[0].get<uint64_t>();
    info.end = (*offsets)[1].get<uint64_t>();
    if (info.begin > info.end || info.end > data_size) {
      return where(absl::StrCat("data_offsets [", info.begin, ", ", info.end,
                                "] lie outside the data section of ", data_size, " bytes"));
    }
    if (info.end - info.begin != bytes) {
      return where(absl::StrCat("shape ", ShapeString(info.shape), " of ", DTypeName(info.dtype), " needs ",
                                bytes, " bytes but data_offsets span ", info.end - info.begin));
    }
    tensors_.push_back(std::move(info));
  }

  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin; });
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (i > 0 && tensors_[i].begin < tensors_[i - 1].end) {
      return Corrupt(path_, absl::StrCat("tensors ", tensors_[i - 1].name, " and ", tensors_[i].name,
                                         " overlap"));
    }
    index_[tensors_[i].name] = i;
  }
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::Span<uint8_t> SafetensorsFile::Data(const TensorInfo& info) const {
  return absl::Span<uint8_t>(data_ + info.begin, info.nbytes());
}

void SafetensorsFile::Release(const TensorInfo& info) const {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  // Only whole pages inside the tensor: a neighbour's bytes on a shared page stay mapped.
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data_ + info.begin) + page - 1) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(data_ + info.end) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// ---------------------------------------------------------------------------------------------
// Writing

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, const std::vector<TensorDecl>& tensors,
    const std::map<std::string, std::string>& metadata) {
  return Open(path, tensors, metadata, /*resume=*/false);
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Resume(
    const std::string& path, const std::vector<TensorDecl>& tensors,
    const std::map<std::string, std::string>& metadata) {
  return Open(path, tensors, metadata, /*resume=*/true);
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Open(
    const std::string& path, const std::vector<TensorDecl>& tensors,
    const std::map<std::string, std::string>& metadata, bool resume) {
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  // nlohmann's ordered_json keeps the declaration order, which is also the data order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    TensorInfo info{t.name, t.dtype, t.shape, offset, 0};
    info.end = offset + static_cast<uint64_t>(info.numel()) * DTypeSize(t.dtype);
    offset = info.end;
    if (!w->tensors_.emplace(t.name, info).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", t.name, " declared twice"));
    }
    w->written_[t.name] = false;
    header[t.name] = {{"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {info.begin, info.end}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  prefix += text;
  w->data_start_ = prefix.size();
  const uint64_t size = w->data_start_ + offset;
  w->digest_.Update(prefix.data(), prefix.size());
  for (const auto& t : tensors) w->in_file_order_.push_back(&w->tensors_.at(t.name));

  w->fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (resume ? 0 : O_CREAT | O_TRUNC), 0644);
  if (w->fd_ < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  if (resume) {
    std::string existing(prefix.size(), '\0');
    struct stat st;
    if (::fstat(w->fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) != size ||
        ::pread(w->fd_, existing.data(), existing.size(), 0) != static_cast<ssize_t>(existing.size()) ||
        existing != prefix) {
      return absl::FailedPreconditionError(absl::StrCat(path, " is not the file being resumed"));
    }
    return w;
  }
  if (::pwrite(w->fd_, prefix.data(), prefix.size(), 0) != static_cast<ssize_t>(prefix.size()) ||
      ::ftruncate(w->fd_, static_cast<off_t>(size)) != 0) {
    return absl::InternalError(absl::StrCat("write ", path, ": ", std::strerror(errno)));
  }
  return w;
}

void SafetensorsWriter::MarkWritten(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = written_.find(name);
  if (it != written_.end()) it->second = true;
  // An earlier attempt wrote it: it is read back when its turn in the digest comes.
}

absl::Status SafetensorsWriter::Sync() {
  SHEARS_RETURN_IF_ERROR(HashWritten());
  if (::fdatasync(fd_) != 0) return absl::InternalError(absl::StrCat("fsync ", path_, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Write(const std::string& name, absl::Span<const uint8_t> bytes) {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return absl::InternalError(absl::StrCat(path_, ": tensor ", name, " was not declared"));
  const TensorInfo& info = it->second;
  if (bytes.size() != info.nbytes()) {
    return absl::InternalError(absl::StrCat(path_, ": tensor ", name, " has ", bytes.size(),
                                            " bytes, declared ", info.nbytes()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (written_[it->first]) return absl::InternalError(absl::StrCat(path_, ": tensor ", name, " written twice"));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                         static_cast<off_t>(data_start_ + info.begin + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::InternalError(absl::StrCat("write ", path_, ": ", std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  // Starts the writeback now, in the background: the next Sync then waits for the tail of the
  // data, not all of it, and the disk writes while the engine computes the next tensors.
  ::sync_file_range(fd_, static_cast<off_t>(data_start_ + info.begin), static_cast<off_t>(bytes.size()),
                    SYNC_FILE_RANGE_WRITE);
  absl::MutexLock lock(&mu_);
  written_[it->first] = true;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::HashWritten() {
  std::string buffer;
  for (;; ++hashed_) {
    const TensorInfo* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (hashed_ == in_file_order_.size() || !written_[in_file_order_[hashed_]->name]) break;
      next = in_file_order_[hashed_];
    }
    constexpr uint64_t kChunk = 8 << 20;
    buffer.resize(std::min(kChunk, next->nbytes()));
    for (uint64_t at = 0; at < next->nbytes();) {
      const uint64_t want = std::min<uint64_t>(buffer.size(), next->nbytes() - at);
      const ssize_t n = ::pread(fd_, buffer.data(), want, static_cast<off_t>(data_start_ + next->begin + at));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::InternalError(absl::StrCat("read back ", path_, ": ", std::strerror(errno)));
      digest_.Update(buffer.data(), static_cast<size_t>(n));
      at += static_cast<uint64_t>(n);
    }
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Close() {
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, done] : written_) {
      if (!done) return absl::InternalError(absl::StrCat(path_, ": tensor ", name, " was never written"));
    }
  }
  SHEARS_RETURN_IF_ERROR(HashWritten());
  sha256_ = digest_.Hex();
  if (::fsync(fd_) != 0) return absl::InternalError(absl::StrCat("fsync ", path_, ": ", std::strerror(errno)));
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return absl::InternalError(absl::StrCat("close ", path_, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace shears::engine
