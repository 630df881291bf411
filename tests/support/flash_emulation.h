// Test support: the CUDA features of the FlashAttention kernels emulated on the CPU, so that the
// kernels themselves (src/ops/cuda/flash_attention_*_kernel.cuh) run in a test without a GPU.
// Each CUDA thread of a block is a fiber (ucontext); a warp collective (ldmatrix, mma.sync,
// shfl) runs once all 32 lanes have reached it, following the PTX ISA's fragment layouts (see
// ops/cuda/flash_attention_ptx.cuh); __syncthreads waits for the whole block. A cp.async lands
// either at once or as late as allowed (at the cp.async.wait_group that waits for its group):
// the two ends of what the hardware may do. Warps either advance together or each runs ahead
// to its next barrier. Finer races are for the GPU test and compute-sanitizer. Include this first,
// then the kernel headers; the includer defines the kernels' shared memory (see emulate_block).
#pragma once
#define QKV_FLASH_EMULATION 1

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#include "tensor/dtype.h"

struct __nv_bfloat16 {
  uint16_t bits;
};
struct __half {
  uint16_t bits;
};
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) {
  return {x, y};
}
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n)  // the includer defines the kernels' shared memory aligned
#define __log2f log2f
using std::max;
using std::min;

namespace flash_emulation {

struct Copy {
  void* dst;
  const void* src;
  int bytes;
  bool valid;
  void run() const {
    valid ? (void)std::memcpy(dst, src, bytes) : (void)std::memset(dst, 0, bytes);
  }
};
struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  dim3 thread;
  bool done = false;
  bool at_barrier = false;                   // waiting in __syncthreads
  std::vector<std::vector<Copy>> groups{1};  // committed groups, then the open one
};
struct Warp {  // what the lanes hand to a collective, and what it gives back
  int arrived = 0;
  unsigned generation = 0;
  uint32_t a[32][4], b[32][2], r[32][4];
  float c[32][4], d[32][4], f[32], f_out[32];
  const uint16_t* row[32];
};
struct State {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  int current = 0, block_arrived = 0;
  unsigned block_generation = 0;
  ucontext_t scheduler;
  std::function<void()> kernel;
  dim3 block, grid, block_dim;
  bool late_copies = false;      // cp.async lands at its wait_group, not at once
  bool warps_run_ahead = false;  // each warp runs up to the next __syncthreads before the next
};
inline State state;

inline void yield() {
  swapcontext(&state.fibers[state.current].context, &state.scheduler);
}
inline dim3& thread() {
  return state.fibers[state.current].thread;
}
inline Warp& warp() {
  return state.warps[thread().x / 32];
}
inline int lane() {
  return thread().x % 32;
}
// The last lane to arrive runs compute for the whole warp; every lane waits for it.
template <class F>
void collective(F compute) {
  Warp& w = warp();
  const unsigned generation = w.generation;
  if (++w.arrived == 32) {
    compute(w);
    w.arrived = 0;
    ++w.generation;
  }
  while (w.generation == generation) yield();
}
inline void run_fiber() {
  state.kernel();
  state.fibers[state.current].done = true;
}

inline void resume(int fiber) {
  state.current = fiber;
  swapcontext(&state.scheduler, &state.fibers[fiber].context);
}
// Round robin over the threads until all have returned; or, with warps_run_ahead, warp after
// warp (in a rotating order), each until all its lanes wait at a __syncthreads, so that warps
// drift as far apart as the barriers allow (a missing barrier shows as a wrong result).
inline void run_block(int threads) {
  for (int round = 0;; ++round) {
    bool live = false;
    for (int w = 0; w < threads / 32; ++w) {
      const int warp = state.warps_run_ahead ? (w + round) % (threads / 32) : w;
      for (bool ran = true; ran;) {
        ran = false;
        for (int i = warp * 32; i < warp * 32 + 32; ++i) {
          Fiber& f = state.fibers[i];
          if (f.done || (state.warps_run_ahead && f.at_barrier)) continue;
          resume(i);
          ran = true;
        }
        live = live || ran;
        ran = ran && state.warps_run_ahead;
      }
    }
    if (!live) return;  // (a round where no thread could run would be a deadlock otherwise)
  }
}

// Runs kernel() as one block of `threads` threads per block index of `grid`, one block at a
// time; shared memory (smem, bytes) is filled with 0xff (NaN) before each block.
inline void emulate(dim3 grid, int threads, void* smem, size_t bytes,
                    std::function<void()> kernel) {
  state.grid = grid;
  state.block_dim = dim3{unsigned(threads)};
  state.kernel = std::move(kernel);
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      state.block = dim3{bx, by};
      std::memset(smem, 0xff, bytes);
      state.fibers.assign(threads, Fiber{});
      state.warps.assign(threads / 32, Warp{});
      state.block_arrived = 0;
      for (int i = 0; i < threads; ++i) {
        Fiber& f = state.fibers[i];
        f.thread = dim3{unsigned(i)};
        f.stack.resize(128 * 1024);
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.data();
        f.context.uc_stack.ss_size = f.stack.size();
        f.context.uc_link = &state.scheduler;
        makecontext(&f.context, run_fiber, 0);
      }
      run_block(threads);
    }
  }
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

}  // namespace flash_emulation

#define threadIdx (::flash_emulation::thread())
#define blockIdx (::flash_emulation::state.block)
#define gridDim (::flash_emulation::state.grid)
#define blockDim (::flash_emulation::state.block_dim)

inline void __syncthreads() {
  auto& s = flash_emulation::state;
  const unsigned generation = s.block_generation;
  if (++s.block_arrived == int(s.fibers.size())) {
    s.block_arrived = 0;
    ++s.block_generation;
    for (auto& f : s.fibers) f.at_barrier = false;
    return;
  }
  s.fibers[s.current].at_barrier = true;
  while (s.block_generation == generation) flash_emulation::yield();
}
inline float __shfl_xor_sync(unsigned, float value, int offset) {
  flash_emulation::warp().f[flash_emulation::lane()] = value;
  flash_emulation::collective(
      [](flash_emulation::Warp& w) { std::memcpy(w.f_out, w.f, sizeof w.f); });
  return flash_emulation::warp().f_out[flash_emulation::lane() ^ offset];
}
inline void atomicAdd(float2* address, float2 value) {  // one block at a time: no race
  address->x += value.x;
  address->y += value.y;
}

// The instructions of ops/cuda/flash_attention_ptx.cuh.
namespace qkv::ops::cuda {

template <class T>
uint32_t pack2(float lo, float hi) {
  using flash_emulation::from_float;
  return from_float<T>(lo) | uint32_t(from_float<T>(hi)) << 16;
}
template <class T>
float2 unpack2(uint32_t bits) {
  using flash_emulation::to_float;
  return {to_float<T>(bits & 0xffffu), to_float<T>(bits >> 16)};
}

// c += a b for a warp: rebuilds A [16, 16], B [16, 8] and C [16, 8] from the lanes' fragments.
template <class T>
void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  flash_emulation::Warp& w = flash_emulation::warp();
  const int lane = flash_emulation::lane();
  std::copy(a, a + 4, w.a[lane]);
  std::copy(c, c + 4, w.c[lane]);
  w.b[lane][0] = b0, w.b[lane][1] = b1;
  flash_emulation::collective([](flash_emulation::Warp& w) {
    auto lo = [](uint32_t x) { return flash_emulation::to_float<T>(x & 0xffffu); };
    auto hi = [](uint32_t x) { return flash_emulation::to_float<T>(x >> 16); };
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      for (int half = 0; half < 2; ++half) {  // a0/a1 (cols 2t), a2/a3 (cols 2t + 8)
        A[g][2 * t + 8 * half] = lo(w.a[l][2 * half]);
        A[g][2 * t + 8 * half + 1] = hi(w.a[l][2 * half]);
        A[g + 8][2 * t + 8 * half] = lo(w.a[l][2 * half + 1]);
        A[g + 8][2 * t + 8 * half + 1] = hi(w.a[l][2 * half + 1]);
        B[2 * t + 8 * half][g] = lo(w.b[l][half]);
        B[2 * t + 8 * half + 1][g] = hi(w.b[l][half]);
      }
      C[g][2 * t] = w.c[l][0], C[g][2 * t + 1] = w.c[l][1];
      C[g + 8][2 * t] = w.c[l][2], C[g + 8][2 * t + 1] = w.c[l][3];
    }
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j)
        for (int k = 0; k < 16; ++k) C[i][j] += A[i][k] * B[k][j];
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      w.d[l][0] = C[g][2 * t], w.d[l][1] = C[g][2 * t + 1];
      w.d[l][2] = C[g + 8][2 * t], w.d[l][3] = C[g + 8][2 * t + 1];
    }
  });
  std::copy(w.d[lane], w.d[lane] + 4, c);
}

// Lanes 8i..8i+7 address the rows of matrix i; lane l gets from each matrix (row l/4, cols
// 2(l%4), +1), or with trans (rows 2(l%4), +1, col l/4).
inline void ldmatrix(uint32_t (&r)[4], const void* row, bool trans) {
  flash_emulation::Warp& w = flash_emulation::warp();
  const int lane = flash_emulation::lane();
  w.row[lane] = static_cast<const uint16_t*>(row);
  auto gather = [trans](flash_emulation::Warp& w) {
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      for (int i = 0; i < 4; ++i)
        w.r[l][i] = trans ? w.row[8 * i + 2 * t][g] | uint32_t(w.row[8 * i + 2 * t + 1][g]) << 16
                          : w.row[8 * i + g][2 * t] | uint32_t(w.row[8 * i + g][2 * t + 1]) << 16;
    }
  };
  flash_emulation::collective(gather);
  std::copy(w.r[lane], w.r[lane] + 4, r);
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  ldmatrix(r, row, false);
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  ldmatrix(r, row, true);
}
inline void cp_async(void* smem, const void* gmem, int bytes, bool valid) {
  const flash_emulation::Copy copy{smem, gmem, bytes, valid};
  if (flash_emulation::state.late_copies)
    flash_emulation::state.fibers[flash_emulation::state.current].groups.back().push_back(copy);
  else
    copy.run();
}
inline void cp_async_16(void* smem, const void* gmem, bool valid) {
  cp_async(smem, gmem, 16, valid);
}
inline void cp_async_4(void* smem, const void* gmem, bool valid) {
  cp_async(smem, gmem, 4, valid);
}
inline void cp_async_commit() {
  flash_emulation::state.fibers[flash_emulation::state.current].groups.emplace_back();
}
// Lands every committed group but the `pending` newest.
template <int pending>
void cp_async_wait() {
  auto& groups = flash_emulation::state.fibers[flash_emulation::state.current].groups;
  const int committed = int(groups.size()) - 1;
  for (int i = 0; i < committed - pending; ++i) {
    for (const auto& copy : groups[i]) copy.run();
    groups[i].clear();
  }
}
inline float exp2_approx(float x) {
  return std::exp2(x);
}

}  // namespace qkv::ops::cuda
