#include "worker/engine/runtime/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

namespace shears::engine {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

class BlockCache final : public c10::Allocator {
 public:
  explicit BlockCache(const CpuBlockCache& settings) : settings_(settings) {}

  c10::DataPtr allocate(size_t bytes) const override {
    if (bytes < settings_.min_block_bytes) return c10::GetDefaultCPUAllocator()->allocate(bytes);
    void* block = Take(bytes);
    return {block, block, &Release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

  void SetLimit(size_t bytes) { limit_ = bytes; }
  size_t InUse() const {
    std::lock_guard<std::mutex> lock(mu_);
    return in_use_;
  }

 private:
  static void Release(void* block);

  void* Take(size_t bytes) const {
    {
      std::lock_guard<std::mutex> lock(mu_);
      const size_t limit = limit_.load();
      TORCH_CHECK_WITH(OutOfMemoryError, limit == 0 || in_use_ + bytes <= limit, "CPU tensor memory limit: ",
                       Mib(bytes), " asked with ", Mib(in_use_), " in use would pass the worker's ", Mib(limit),
                       " (--max-tensor-memory)");
      in_use_ += bytes;
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* block = it->second;
        free_.erase(it);
        order_.erase(std::find(order_.begin(), order_.end(), block));
        cached_bytes_ -= bytes;
        live_[block] = bytes;
        return block;
      }
    }
    void* block = nullptr;
    // Huge-page aligned, so the kernel can back it with 2 MiB pages (one fault for 512 small ones).
    if (posix_memalign(&block, kHugePage, bytes) != 0) {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= bytes;
      throw std::bad_alloc();
    }
    ::madvise(block, bytes, MADV_HUGEPAGE);
    std::lock_guard<std::mutex> lock(mu_);
    live_[block] = bytes;
    return block;
  }

  void Keep(void* block) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(block);
    const size_t bytes = it->second;
    live_.erase(it);
    in_use_ -= bytes;
    if (bytes > settings_.max_cached_bytes) {
      std::free(block);
      return;
    }
    while (cached_bytes_ + bytes > settings_.max_cached_bytes) {
      void* oldest = order_.front();
      order_.pop_front();
      for (auto f = free_.begin(); f != free_.end(); ++f) {
        if (f->second == oldest) {
          cached_bytes_ -= f->first;
          free_.erase(f);
          break;
        }
      }
      std::free(oldest);
    }
    free_.emplace(bytes, block);
    order_.push_back(block);
    cached_bytes_ += bytes;
  }

  static std::string Mib(size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

  const CpuBlockCache settings_;
  std::atomic<size_t> limit_{0};
  mutable std::mutex mu_;
  mutable std::unordered_map<void*, size_t> live_;   // handed out
  mutable std::multimap<size_t, void*> free_;        // kept, by size
  mutable std::deque<void*> order_;                  // kept, oldest first
  mutable size_t cached_bytes_ = 0;
  mutable size_t in_use_ = 0;  // bytes of the blocks in live_
};

BlockCache* g_cache = nullptr;

void BlockCache::Release(void* block) { g_cache->Keep(block); }

}  // namespace

void InstallCpuBlockCache(const CpuBlockCache& settings) {
  static std::once_flag once;
  std::call_once(once, [&] {
    g_cache = new BlockCache(settings);  // lives as long as the tensors it made
    c10::SetCPUAllocator(g_cache, /*priority=*/1);
  });
}

void SetCpuTensorMemoryLimit(size_t bytes) {
  if (g_cache != nullptr) g_cache->SetLimit(bytes);
}

size_t CpuTensorBytesInUse() {
  return g_cache == nullptr ? 0 : g_cache->InUse();
}

}  // namespace shears::engine
