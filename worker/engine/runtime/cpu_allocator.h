#pragma once
// The CPU allocator the worker installs for LibTorch (ConfigureRuntime). LibTorch gives every
// large tensor to malloc, which the runtime keeps mapping large blocks afresh (runtime.cc says
// why): a pass over a 7B-shaped block then spends more time in page faults, the kernel zeroing
// the pages of the hundreds of megabytes of tensors it makes and drops, than in arithmetic. This
// allocator keeps freed blocks of 1 MiB and more for the next tensor of the same size (a block's
// tensors come back in the same sizes block after block), at most a fixed number of bytes of them,
// oldest given back first, and asks the kernel for transparent huge pages.

#include <cstddef>

namespace shears::engine {

struct CpuBlockCache {
  size_t min_block_bytes = size_t{1} << 20;  // smaller ones stay with malloc
  size_t max_cached_bytes = size_t{1} << 30;  // freed blocks kept for reuse, in all
};

// Installs the allocator for every later CPU tensor of the process; the first call wins.
void InstallCpuBlockCache(const CpuBlockCache& settings = {});

// The most bytes the process's CPU tensors of min_block_bytes and more may hold at once (0, the
// default: no limit). A tensor that would pass it is refused with LibTorch's own out-of-memory
// error, which fails the job with the sizes in the reason, where the kernel's OOM killer would
// take the whole worker and leave the job to crash the next one. Smaller tensors are not counted:
// they are a few megabytes in all, the big ones gigabytes. Needs the block cache installed.
void SetCpuTensorMemoryLimit(size_t bytes);
// The bytes counted against that limit now.
size_t CpuTensorBytesInUse();

}  // namespace shears::engine
