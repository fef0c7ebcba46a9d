#pragma once
// The safetensors format: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the data. Reading maps the file and checks every header entry
// against the file before any byte is used; writing declares all tensors first, so each can be
// written at its own offset in any order and a model never has to sit in memory whole.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/sha256.h"

namespace shears::engine {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

absl::StatusOr<DType> ParseDType(const std::string& name);
const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In the order of their data in the file.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(const std::string& name) const;
  // The tensor's bytes. The mapping is private and writable (copy-on-write), so callers may wrap
  // it in a tensor without copying; the file itself is never changed.
  absl::Span<uint8_t> Data(const TensorInfo& info) const;
  // Gives the tensor's pages back to the kernel once its bytes have been copied out, so that
  // reading a whole checkpoint keeps no more of it resident than the tensor being read.
  void Release(const TensorInfo& info) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  absl::Status ParseHeader(const std::string& header, uint64_t data_size);

  std::string path_;
  uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  uint8_t* data_ = nullptr;  // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct TensorDecl {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

class SafetensorsWriter {
 public:
  // Creates `path` with room for every declared tensor, in the order given.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, const std::vector<TensorDecl>& tensors,
      const std::map<std::string, std::string>& metadata = {});
  // Reopens a file an earlier writer created with the same declarations, keeping its bytes, to
  // finish it; FAILED_PRECONDITION when the file is not that. Tensors already in it are marked
  // with MarkWritten.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Resume(
      const std::string& path, const std::vector<TensorDecl>& tensors,
      const std::map<std::string, std::string>& metadata = {});
  void MarkWritten(const std::string& name);
  // Makes everything written so far durable. Safe from another thread than the one writing (one
  // thread at a time calls Sync).
  absl::Status Sync();
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // `bytes` must have exactly the declared size; each tensor is written once.
  absl::Status Write(const std::string& name, absl::Span<const uint8_t> bytes);
  // Fails if a declared tensor was never written; syncs the file.
  absl::Status Close();
  // The file's sha256 (hex), once closed. It is computed as the file is written: Sync and Close
  // hash what is complete from the start of the file, read back from the page cache (Sync can run
  // beside the writing thread, so the hashing need not hold it up).
  const std::string& sha256() const { return sha256_; }

 private:
  SafetensorsWriter() = default;
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Open(const std::string& path,
                                                                  const std::vector<TensorDecl>& tensors,
                                                                  const std::map<std::string, std::string>& metadata,
                                                                  bool resume);
  // Hashes the tensors written from where the digest stands up to the first one missing.
  absl::Status HashWritten();

  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  absl::Mutex mu_;
  std::map<std::string, bool, std::less<>> written_ ABSL_GUARDED_BY(mu_);
  std::vector<const TensorInfo*> in_file_order_;
  size_t hashed_ = 0;  // tensors of in_file_order_ in the digest, advanced by Sync and Close
  Sha256 digest_;
  std::string sha256_;
};

}  // namespace shears::engine
