// A caching allocator: freed blocks go back to a per-size free list instead of to the system,
// so a training step that allocates the same activations every time stops calling malloc after
// the first step. One allocator per device.
#pragma once
#include <cstddef>
#include <map>
#include <mutex>
#include <vector>

#include "tensor/dtype.h"

namespace qkv {

struct AllocatorStats {
  size_t bytes_in_use = 0;        // held by live tensors
  size_t peak_bytes_in_use = 0;   // high-water mark of bytes_in_use since the last reset
  size_t bytes_cached = 0;        // held in free lists, ready for reuse
  size_t system_allocations = 0;  // calls that reached the system allocator
};

class CachingAllocator {
 public:
  explicit CachingAllocator(Device device);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes`; *capacity receives its real size, which deallocate needs.
  // A cached block up to twice the rounded size may serve the request (best fit).
  void* allocate(size_t bytes, size_t* capacity);
  void deallocate(void* ptr, size_t capacity);
  // Returns every cached block to the system.
  void release_cached();
  AllocatorStats stats() const;
  void reset_peak();
  // Cached bytes above which a miss first returns the whole cache to the system (batches of
  // varying shapes would otherwise pile up blocks of every size). Default 1 GiB, or
  // $QKV_ALLOCATOR_CACHE_MB.
  void set_cache_limit(size_t bytes) { cache_limit_ = bytes; }

  // Size classes: 64-byte multiples up to 4 KiB, then 8 steps per power of two.
  static size_t round_size(size_t bytes);

 private:
  void* system_alloc(size_t bytes);
  void system_free(void* ptr);

  Device device_;
  mutable std::mutex mutex_;
  void release_cached_locked();

  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
  size_t cache_limit_;
};

CachingAllocator& allocator_for(Device device);

}  // namespace qkv
