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
  explicit CachingAllocator(Device device) : device_(device) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t bytes);
  void deallocate(void* ptr, size_t bytes);
  // Returns every cached block to the system.
  void release_cached();
  AllocatorStats stats() const;
  void reset_peak();

  // Size classes: 64-byte multiples up to 4 KiB, then 8 steps per power of two.
  static size_t round_size(size_t bytes);

 private:
  void* system_alloc(size_t bytes);
  void system_free(void* ptr);

  Device device_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

CachingAllocator& allocator_for(Device device);

}  // namespace qkv
