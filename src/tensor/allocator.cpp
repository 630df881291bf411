#include "tensor/allocator.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <new>
#include <stdexcept>

namespace qkv {

#ifdef QKV_WITH_CUDA
void* cuda_malloc(size_t bytes);  // defined in tensor/cuda_memory.cu
void cuda_free(void* ptr);
#endif

CachingAllocator::CachingAllocator(Device device) : device_(device), cache_limit_(size_t(1) << 30) {
  if (const char* mb = std::getenv("QKV_ALLOCATOR_CACHE_MB"))
    cache_limit_ = size_t(std::atoll(mb)) << 20;
}

CachingAllocator::~CachingAllocator() {
  release_cached();
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) return 64;
  if (bytes <= 4096) return (bytes + 63) & ~size_t(63);
  size_t top = std::bit_floor(bytes);
  size_t step = top / 8;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::system_alloc(size_t bytes) {
  if (device_ == Device::cpu) {
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
#ifdef QKV_WITH_CUDA
  return cuda_malloc(bytes);
#else
  throw std::runtime_error("qkv was built without CUDA (configure with -DQKV_CUDA=ON)");
#endif
}

void CachingAllocator::system_free(void* ptr) {
  if (device_ == Device::cpu) {
    std::free(ptr);
    return;
  }
#ifdef QKV_WITH_CUDA
  cuda_free(ptr);
#endif
}

void* CachingAllocator::allocate(size_t bytes, size_t* capacity) {
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  // Best fit among cached blocks no larger than twice the request.
  for (auto it = free_.lower_bound(size); it != free_.end() && it->first <= 2 * size; ++it) {
    if (it->second.empty()) continue;
    void* p = it->second.back();
    it->second.pop_back();
    stats_.bytes_cached -= it->first;
    stats_.bytes_in_use += it->first;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    *capacity = it->first;
    return p;
  }
  if (stats_.bytes_cached > cache_limit_) release_cached_locked();
  ++stats_.system_allocations;
  void* p = system_alloc(size);
  stats_.bytes_in_use += size;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  *capacity = size;
  return p;
}

void CachingAllocator::deallocate(void* ptr, size_t capacity) {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.bytes_in_use -= capacity;
  stats_.bytes_cached += capacity;
  free_[capacity].push_back(ptr);
}

void CachingAllocator::release_cached_locked() {
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) system_free(p);
  free_.clear();
  stats_.bytes_cached = 0;
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

CachingAllocator& allocator_for(Device device) {
  // Leaked on purpose: tensors in static objects may outlive a destroyed allocator.
  static auto* cpu = new CachingAllocator(Device::cpu);
  static auto* cuda = new CachingAllocator(Device::cuda);
  return device == Device::cpu ? *cpu : *cuda;
}

}  // namespace qkv
