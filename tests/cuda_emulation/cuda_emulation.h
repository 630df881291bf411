// CUDA emulated on the CPU, so that qkv's kernels run in tests on a machine without a GPU.
// The sources are compiled as C++ after cmake/cuda_emulation.cmake has rewritten each launch
// `k<<<grid, block, smem, stream>>>(args)` into a call of cuda_emulation::launch and each
// `extern __shared__ T name[]` into the block's dynamic shared memory.
//
// Each CUDA thread of a block is a fiber (its own stack); blocks run one after another. A warp
// collective (shfl, and the PTX instructions of ptx.h) runs once all lanes of the warp have
// reached it; __syncthreads waits for the whole block. Launched kernels run each warp ahead to
// its next barrier before the next warp starts: block_reduce without its first barrier fails
// the LayerNorm and softmax tests this way (and passes them with warps in lockstep). A barrier or
// collective that some thread can never reach (it returned, or waits elsewhere) is reported as a
// deadlock naming the kernel. Shared memory: `__shared__` variables are statics (blocks do not
// overlap); dynamic shared memory is one buffer filled with 0xff bytes (NaN) before each block.
// What this cannot show: races between threads that the hardware runs at once, timing, and a
// misreading of CUDA or the PTX ISA that the emulation shares with the kernels.
#pragma once
#define QKV_CUDA_EMULATION 1
#define QKV_FLASH_EMULATION 1  // flash_attention_device.cuh takes the instructions of ptx.h

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#include "tensor/dtype.h"

struct __nv_bfloat16 {
  uint16_t bits;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : bits(qkv::to_bf16(f).bits) {}
  operator float() const { return qkv::from_bf16(qkv::bf16{bits}); }
};
struct __half {
  uint16_t bits;
  __half() = default;
  __half(float f) : bits(qkv::to_f16(f).bits) {}
  operator float() const { return qkv::from_f16(qkv::f16{bits}); }
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __nv_bfloat16(f);
}
struct alignas(8) float2 {  // CUDA's vector types are aligned to their size
  float x, y;
};
inline float2 make_float2(float x, float y) {
  return {x, y};
}
struct alignas(16) uint4 {
  uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) {
  return {x, y, z, w};
}
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x = 1, unsigned y = 1, unsigned z = 1) : x(x), y(y), z(z) {}
};
using cudaStream_t = struct CUstream_st*;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define __log2f log2f
using std::max;
using std::min;

namespace cuda_emulation {

// The largest dynamic shared memory a block may ask for (the H100's 227 KB).
constexpr size_t kMaxDynamicShared = 227 * 1024;

struct Copy {  // a cp.async not landed yet
  void* dst;
  const void* src;
  int bytes;
  bool valid;
  void run() const {
    valid ? (void)std::memcpy(dst, src, bytes) : (void)std::memset(dst, 0, bytes);
  }
};
struct Fiber {
  void* stack_pointer = nullptr;  // saved while the fiber does not run
  dim3 thread;
  bool done = false;
  bool at_barrier = false;                   // waiting in __syncthreads
  std::vector<std::vector<Copy>> groups{1};  // committed cp.async groups, then the open one
};
struct Warp {  // what the lanes hand to a collective, and what it gives back
  int arrived = 0, lanes = 32;
  unsigned generation = 0;
  uint32_t a[32][4], b[32][2], r[32][4];
  float c[32][4], d[32][4];
  uint64_t word[32], word_out[32];
  const uint16_t* row[32];
};
struct State {
  std::vector<Fiber> fibers;
  std::vector<std::unique_ptr<char[]>> stacks;  // one per fiber, kept across blocks
  std::vector<Warp> warps;
  int current = 0, block_arrived = 0;
  unsigned block_generation = 0;
  uint64_t progress = 0;  // barriers and collectives passed, threads finished
  void* scheduler_stack_pointer = nullptr;
  std::function<void()> kernel;
  const char* kernel_name = "kernel";
  dim3 block, grid, block_dim;
  alignas(128) unsigned char dynamic_shared[kMaxDynamicShared];
  bool late_copies = false;      // cp.async lands at its wait_group, not at once
  bool warps_run_ahead = false;  // each warp runs up to the next __syncthreads before the next
};
inline State state;

void yield();  // back to the scheduler, which resumes this fiber later
inline const dim3& thread() {
  return state.fibers[state.current].thread;
}
inline Warp& warp() {
  return state.warps[thread().x / 32];
}
inline int lane() {
  return int(thread().x % 32);
}
[[noreturn]] void deadlock();  // prints which kernel and aborts (fibers.cpp)
// Aborts, naming the kernel, unless `address` is a multiple of `bytes`: a GPU faults with
// "misaligned address" where x86 would quietly load (fibers.cpp).
void check_aligned(const void* address, int bytes, const char* what);

// The last lane to arrive runs compute for the whole warp; every lane waits for it.
template <class F>
void collective(F compute) {
  Warp& w = warp();
  const unsigned generation = w.generation;
  ++state.progress;
  if (++w.arrived == w.lanes) {
    compute(w);
    w.arrived = 0;
    ++w.generation;
    ++state.progress;
  }
  while (w.generation == generation) yield();
}

// Round robin over the threads until all have returned; or, with warps_run_ahead, warp after
// warp (in a rotating order), each until all its lanes wait at a __syncthreads, so that warps
// drift as far apart as the barriers allow (a missing barrier shows as a wrong result).
void run_block(int threads);

// Runs kernel() as every thread of every block of grid x block_dim (one block at a time).
void run_grid(dim3 grid, dim3 block_dim, size_t dynamic_shared, const char* name,
              std::function<void()> kernel);

unsigned char* dynamic_shared_memory();

// The schedule of launched kernels: warps run ahead to their next barrier (the schedule that
// shows a missing barrier), unless QKV_CUDA_EMULATION_SCHEDULE=lockstep.
bool warps_run_ahead_by_default();

// The launch configuration of `name<<<grid, block, smem, stream>>>`; `kernel` is its address.
struct Launch {
  const char* name;
  const void* kernel;
  dim3 grid, block = dim3();
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
};

// Device memory is host memory that only device work may touch (runtime.cpp): outside a
// DeviceAccess scope a host read or write of it faults, and the fault names the culprit.
bool is_device_pointer(const void* p);
class DeviceAccess {
 public:
  explicit DeviceAccess(const char* who);
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
};
template <class F>
const void* address_of(F* kernel) {
  return reinterpret_cast<const void*>(kernel);
}
// A kernel may use 48 KiB of dynamic shared memory, or what cudaFuncSetAttribute raised its
// limit to (runtime.cpp).
constexpr size_t kDefaultDynamicShared = 48 * 1024;
void set_dynamic_shared_limit(const void* kernel, size_t bytes);
// A launch error for cudaGetLastError (bad configuration, a host pointer as an argument).
void set_launch_error(const char* kernel, const char* why);
bool valid_launch(const Launch& l);

// False (and a launch error) for a pointer argument that is not device memory.
template <class A>
bool check_argument(const char* kernel, const A& arg) {
  if constexpr (std::is_pointer_v<A>) {
    if (arg != nullptr && !is_device_pointer(arg)) {
      set_launch_error(kernel, "a pointer argument is not device memory");
      return false;
    }
  }
  return true;
}

// The kernel's arguments are copied once, as CUDA copies them to the device; each thread calls
// `kernel` with its own copy.
template <class Kernel, class... A>
void launch(const Launch& l, Kernel kernel, A&&... args) {
  std::tuple<std::decay_t<A>...> params(std::forward<A>(args)...);
  if (!valid_launch(l)) return;
  bool arguments_ok = true;
  std::apply([&](const auto&... p) { ((arguments_ok &= check_argument(l.name, p)), ...); }, params);
  if (!arguments_ok) return;  // (on a GPU: an illegal address when the kernel runs)
  DeviceAccess access(l.name);
  state.warps_run_ahead = warps_run_ahead_by_default();
  run_grid(l.grid, l.block, l.shared_bytes, l.name, [&] {
    auto copy = params;
    std::apply(kernel, copy);
  });
}

template <class T>
float to_float(uint16_t bits) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return qkv::from_bf16(qkv::bf16{bits});
  else
    return qkv::from_f16(qkv::f16{bits});
}
template <class T>
uint16_t from_float(float f) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return qkv::to_bf16(f).bits;
  else
    return qkv::to_f16(f).bits;
}

}  // namespace cuda_emulation

#define threadIdx (::cuda_emulation::thread())
#define blockIdx (::cuda_emulation::state.block)
#define gridDim (::cuda_emulation::state.grid)
#define blockDim (::cuda_emulation::state.block_dim)

void __syncthreads();

// Lane l gets the value of lane l ^ offset (any type of at most 8 bytes).
template <class T>
T __shfl_xor_sync(unsigned, T value, int offset) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  using cuda_emulation::lane;
  using cuda_emulation::warp;
  std::memcpy(&warp().word[lane()], &value, sizeof(T));
  cuda_emulation::collective(
      [](cuda_emulation::Warp& w) { std::memcpy(w.word_out, w.word, sizeof w.word); });
  T out;
  std::memcpy(&out, &warp().word_out[lane() ^ offset], sizeof(T));
  return out;
}
// One thread runs at a time: atomics are plain read-modify-writes.
inline float atomicAdd(float* address, float value) {
  float old = *address;
  *address += value;
  return old;
}
inline void atomicAdd(float2* address, float2 value) {
  address->x += value.x;
  address->y += value.y;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t __umulhi(uint32_t a, uint32_t b) {
  return uint32_t((uint64_t(a) * b) >> 32);
}

#include "ptx.h"
