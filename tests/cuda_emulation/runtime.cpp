// The CUDA runtime of the emulated backend: one device whose memory is host memory that only
// device work may touch. Each cudaMalloc gets its own pages, ending at a guard page; they are
// readable and writable only inside a DeviceAccess scope (a kernel, a copy, a memset, a cuBLAS
// call), so host code that dereferences a device pointer, or a kernel that runs past the end of
// an allocation, faults, and the fault handler names who did it.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "include/cuda_runtime.h"

namespace cuda_emulation {
namespace {

struct Allocation {
  char* map;         // the mapping: data pages, then one guard page
  size_t map_bytes;  //
  char* data;        // what cudaMalloc returned: its end is 256-byte rounded, at the guard page
  size_t bytes;
};

size_t page_bytes() {
  static const size_t bytes = size_t(sysconf(_SC_PAGESIZE));
  return bytes;
}

struct Memory {
  std::recursive_mutex mutex;
  std::map<const char*, Allocation> live;  // by data
  int open = 0;                            // DeviceAccess depth
  const char* who = nullptr;               // the open scope's name
  cudaError_t last_error = cudaSuccess;

  const Allocation* find(const void* p) {  // the allocation holding p, or ending at p
    auto it = live.upper_bound(static_cast<const char*>(p));
    if (it == live.begin()) return nullptr;
    --it;
    const char* c = static_cast<const char*>(p);
    return c <= it->second.data + it->second.bytes ? &it->second : nullptr;
  }
  void protect(const Allocation& a, int prot) { mprotect(a.map, a.map_bytes - page_bytes(), prot); }
};
Memory& memory() {
  static Memory* m = new Memory;  // never destroyed: static destructors may still free memory
  return *m;
}

void on_fault(int, siginfo_t* info, void*) {
  Memory& m = memory();
  const char* at = static_cast<const char*>(info->si_addr);
  for (const auto& [data, a] : m.live) {
    if (at < a.map || at >= a.map + a.map_bytes) continue;
    const bool past_end = at >= a.data + a.bytes;
    std::fprintf(stderr,
                 "cuda emulation: %s touched device memory at %p, %s an allocation of %zu bytes "
                 "at %p\n",
                 m.open ? m.who : "host code (not a kernel, copy or cuBLAS call)", (void*)at,
                 past_end ? "past the end of" : "inside", a.bytes, (void*)a.data);
    break;
  }
  signal(SIGSEGV, SIG_DFL);  // returning re-runs the access, which now kills the process
}

void install_fault_handler() {
  static const bool installed = [] {
    struct sigaction action = {};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &action, nullptr);
    return true;
  }();
  (void)installed;
}

bool is_device(const void* p) {
  return memory().find(p) != nullptr;
}

}  // namespace

bool is_device_pointer(const void* p) {
  std::lock_guard lock(memory().mutex);
  return is_device(p);
}

DeviceAccess::DeviceAccess(const char* who) {
  Memory& m = memory();
  m.mutex.lock();  // held for the whole scope: device work runs one at a time
  if (m.open++ == 0) {
    m.who = who;
    for (const auto& [data, a] : m.live) m.protect(a, PROT_READ | PROT_WRITE);
  }
}

DeviceAccess::~DeviceAccess() {
  Memory& m = memory();
  if (--m.open == 0) {
    for (const auto& [data, a] : m.live) m.protect(a, PROT_NONE);
    m.who = nullptr;
  }
  m.mutex.unlock();
}

void set_launch_error(const char* kernel, const char* why) {
  std::fprintf(stderr, "cuda emulation: launch of %s failed: %s\n", kernel, why);
  memory().last_error = cudaErrorInvalidConfiguration;
}

namespace {
std::mutex dynamic_shared_mutex;
std::map<const void*, size_t>& dynamic_shared_limits() {
  static std::map<const void*, size_t> limits;
  return limits;
}
size_t dynamic_shared_limit(const void* kernel) {
  std::lock_guard<std::mutex> lock(dynamic_shared_mutex);
  auto it = dynamic_shared_limits().find(kernel);
  return it == dynamic_shared_limits().end() ? kDefaultDynamicShared : it->second;
}
}  // namespace

void set_dynamic_shared_limit(const void* kernel, size_t bytes) {
  std::lock_guard<std::mutex> lock(dynamic_shared_mutex);
  dynamic_shared_limits()[kernel] = bytes;
}

bool valid_launch(const Launch& l) {
  const unsigned threads = l.block.x * l.block.y * l.block.z;
  const char* why = nullptr;
  if (threads == 0 || threads > 1024 || l.block.z > 64)
    why = "a block of 0 or more than 1024 threads";
  else if (l.grid.x == 0 || l.grid.y == 0 || l.grid.z == 0 || l.grid.y > 65535 || l.grid.z > 65535)
    why = "an empty grid, or grid.y or grid.z above 65535";
  else if (l.shared_bytes > dynamic_shared_limit(l.kernel))
    why = l.shared_bytes > kMaxDynamicShared
              ? "more dynamic shared memory than the device has"
              : "more than 48 KiB of dynamic shared memory, and no cudaFuncSetAttribute("
                "MaxDynamicSharedMemorySize) raised the kernel's limit that far";
  if (why) set_launch_error(l.name, why);
  return why == nullptr;
}

}  // namespace cuda_emulation

using cuda_emulation::Allocation;
using cuda_emulation::DeviceAccess;
using cuda_emulation::memory;

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  cudaError_t e = memory().last_error;
  memory().last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : "emulated CUDA error (see the message above)";
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  auto& m = memory();
  std::lock_guard lock(m.mutex);
  cuda_emulation::install_fault_handler();
  const size_t page = cuda_emulation::page_bytes();
  const size_t rounded = (bytes + 255) / 256 * 256;
  const size_t map_bytes = (rounded + page - 1) / page * page + page;
  void* map = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) return cudaErrorMemoryAllocation;
  Allocation a{static_cast<char*>(map), map_bytes, nullptr, bytes};
  a.data = a.map + map_bytes - page - rounded;
  std::memset(a.data, 0xff, rounded);  // as uninitialised: NaN
  mprotect(a.map + map_bytes - page, page, PROT_NONE);
  if (!m.open) m.protect(a, PROT_NONE);
  m.live.emplace(a.data, a);
  *ptr = a.data;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  auto& m = memory();
  std::lock_guard lock(m.mutex);
  auto it = m.live.find(static_cast<const char*>(ptr));
  if (it == m.live.end()) return cudaErrorInvalidDevicePointer;
  munmap(it->second.map, it->second.map_bytes);
  m.live.erase(it);
  return cudaSuccess;
}

namespace {
// Whether [p, p + bytes) lies in one device allocation.
bool device_range(const void* p, size_t bytes) {
  const Allocation* a = memory().find(p);
  return a && static_cast<const char*>(p) + bytes <= a->data + a->bytes;
}
bool host_range(const void* p, size_t bytes) {
  return bytes == 0 || (p && !memory().find(p));
}
bool valid_copy(void* dst, size_t dst_span, const void* src, size_t src_span, cudaMemcpyKind kind) {
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  return (dst_device ? device_range(dst, dst_span) : host_range(dst, dst_span)) &&
         (src_device ? device_range(src, src_span) : host_range(src, src_span));
}
}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  if (bytes == 0) return cudaSuccess;
  DeviceAccess access("cudaMemcpyAsync");
  if (!valid_copy(dst, bytes, src, bytes, kind)) return cudaErrorInvalidValue;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t) {
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > dst_pitch || width > src_pitch) return cudaErrorInvalidValue;
  DeviceAccess access("cudaMemcpy2DAsync");
  if (!valid_copy(dst, dst_pitch * (height - 1) + width, src, src_pitch * (height - 1) + width,
                  kind))
    return cudaErrorInvalidValue;
  for (size_t r = 0; r < height; ++r)
    std::memmove(static_cast<char*>(dst) + r * dst_pitch,
                 static_cast<const char*>(src) + r * src_pitch, width);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  if (bytes == 0) return cudaSuccess;
  DeviceAccess access("cudaMemsetAsync");
  if (!device_range(dst, bytes)) return cudaErrorInvalidValue;
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;  // work runs when it is queued
}
