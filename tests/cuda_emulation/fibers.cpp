// The thread scheduler of cuda_emulation.h: a fiber per CUDA thread, one block at a time.
// Switching saves the callee-saved registers on the old stack and swaps stack pointers
// (x86-64 System V); thousands of switches per block make ucontext's signal-mask system calls
// the bulk of a test's time.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cuda_emulation.h"

#if !defined(__x86_64__)
#error "tests/cuda_emulation switches fibers for x86-64 only"
#endif

// AddressSanitizer must be told of each switch (which stack is current), or it takes the
// fibers' frames for the scheduler's and reports false errors.
#if defined(__SANITIZE_ADDRESS__)
#define QKV_FIBERS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QKV_FIBERS_ASAN 1
#endif
#endif
#ifdef QKV_FIBERS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// switch_stack(save, next): saves this context's stack pointer in *save, continues at next.
extern "C" void cuda_emulation_switch_stack(void** save, void* next);
asm(R"(
  .text
  .globl cuda_emulation_switch_stack
  .type cuda_emulation_switch_stack, @function
cuda_emulation_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emulation_switch_stack, .-cuda_emulation_switch_stack
)");

namespace cuda_emulation {
namespace {

constexpr size_t kStackBytes = 128 * 1024;

#ifdef QKV_FIBERS_ASAN
// The scheduler's stack, as AddressSanitizer reports it when a fiber first runs.
const void* scheduler_stack_bottom = nullptr;
size_t scheduler_stack_size = 0;
#endif

// Around each switch: before it, the stack switched to (fake_stack: where this context's
// fake stack is kept; nullptr when this context ends); after it, on the stack switched to.
inline void before_switch(void** fake_stack, const void* bottom, size_t size) {
#ifdef QKV_FIBERS_ASAN
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#endif
}
inline void after_switch(void* fake_stack) {
#ifdef QKV_FIBERS_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, &scheduler_stack_bottom, &scheduler_stack_size);
#endif
}
// The scheduler's side: which of the stacks was left is known (a fiber's).
inline void after_switch_to_scheduler(void* fake_stack) {
#ifdef QKV_FIBERS_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

[[noreturn]] void run_fiber() {
  after_switch(nullptr);  // a fresh fiber: no fake stack of its own yet
  state.kernel();
  Fiber& f = state.fibers[state.current];
  f.done = true;
  ++state.progress;
  void* unused;
#ifdef QKV_FIBERS_ASAN
  before_switch(nullptr, scheduler_stack_bottom, scheduler_stack_size);  // this fiber ends
#endif
  cuda_emulation_switch_stack(&unused, state.scheduler_stack_pointer);
  __builtin_unreachable();
}

// A fresh stack whose first switch "returns" into run_fiber: six zero registers, then its
// address, then a null return address, so that run_fiber starts with the stack aligned as
// after a call.
void* new_fiber_stack(char* stack) {
#ifdef QKV_FIBERS_ASAN
  // The frames of the fiber that ran here last never returned: their redzones are poisoned.
  ASAN_UNPOISON_MEMORY_REGION(stack, kStackBytes);
#endif
  auto top = reinterpret_cast<uintptr_t>(stack + kStackBytes) & ~uintptr_t(15);
  auto* slot = reinterpret_cast<void**>(top);
  *--slot = nullptr;
  *--slot = reinterpret_cast<void*>(&run_fiber);
  for (int i = 0; i < 6; ++i) *--slot = nullptr;
  return slot;
}

void resume(int fiber) {
  state.current = fiber;
  void* fake_stack = nullptr;
  before_switch(&fake_stack, state.stacks[size_t(fiber)].get(), kStackBytes);
  cuda_emulation_switch_stack(&state.scheduler_stack_pointer, state.fibers[fiber].stack_pointer);
  after_switch_to_scheduler(fake_stack);
}

bool all_done() {
  for (const Fiber& f : state.fibers)
    if (!f.done) return false;
  return true;
}

}  // namespace

void yield() {
  void* fake_stack = nullptr;
#ifdef QKV_FIBERS_ASAN
  before_switch(&fake_stack, scheduler_stack_bottom, scheduler_stack_size);
#endif
  cuda_emulation_switch_stack(&state.fibers[state.current].stack_pointer,
                              state.scheduler_stack_pointer);
  after_switch(fake_stack);
}

void deadlock() {
  int waiting = 0, done = 0;
  for (const Fiber& f : state.fibers) (f.done ? done : waiting)++;
  std::fprintf(stderr,
               "cuda emulation: deadlock in %s, block (%u, %u, %u): %d threads wait at a barrier "
               "or warp collective that %d returned threads never reach\n",
               state.kernel_name, state.block.x, state.block.y, state.block.z, waiting, done);
  std::abort();
}

void check_aligned(const void* address, int bytes, const char* what) {
  if (reinterpret_cast<uintptr_t>(address) % uintptr_t(bytes) == 0) return;
  std::fprintf(stderr,
               "cuda emulation: misaligned address in %s, block (%u, %u, %u) thread (%u, %u, %u): "
               "%s at %p needs %d-byte alignment\n",
               state.kernel_name, state.block.x, state.block.y, state.block.z, thread().x,
               thread().y, thread().z, what, address, bytes);
  std::abort();
}

void run_block(int threads) {
  const int warps = (threads + 31) / 32;
  for (int round = 0;; ++round) {
    const uint64_t progress = state.progress;
    for (int w = 0; w < warps; ++w) {
      const int warp = state.warps_run_ahead ? (w + round) % warps : w;
      const int end = std::min(warp * 32 + 32, threads);
      for (bool ran = true; ran;) {
        ran = false;
        for (int i = warp * 32; i < end; ++i) {
          Fiber& f = state.fibers[i];
          if (f.done || (state.warps_run_ahead && f.at_barrier)) continue;
          resume(i);
          ran = true;
        }
        ran = ran && state.warps_run_ahead;
      }
    }
    if (all_done()) return;
    if (state.progress == progress) deadlock();
  }
}

void run_grid(dim3 grid, dim3 block_dim, size_t dynamic_shared, const char* name,
              std::function<void()> kernel) {
  const int threads = int(block_dim.x * block_dim.y * block_dim.z);
  state.grid = grid;
  state.block_dim = block_dim;
  state.kernel = std::move(kernel);
  state.kernel_name = name;
  while (state.stacks.size() < size_t(threads))
    state.stacks.push_back(std::unique_ptr<char[]>(new char[kStackBytes]));
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        state.block = dim3(bx, by, bz);
        std::memset(state.dynamic_shared, 0xff, dynamic_shared);
        state.fibers.assign(threads, Fiber{});
        state.warps.assign((threads + 31) / 32, Warp{});
        state.warps.back().lanes = threads - 32 * (int(state.warps.size()) - 1);
        state.block_arrived = 0;
        for (int i = 0; i < threads; ++i) {
          Fiber& f = state.fibers[i];
          f.thread =
              dim3(i % block_dim.x, i / block_dim.x % block_dim.y, i / (block_dim.x * block_dim.y));
          f.stack_pointer = new_fiber_stack(state.stacks[i].get());
        }
        run_block(threads);
      }
    }
  }
  state.kernel = nullptr;
}

unsigned char* dynamic_shared_memory() {
  return state.dynamic_shared;
}

bool warps_run_ahead_by_default() {
  static const bool run_ahead = [] {
    const char* schedule = std::getenv("QKV_CUDA_EMULATION_SCHEDULE");
    return !(schedule && std::string(schedule) == "lockstep");
  }();
  return run_ahead;
}

}  // namespace cuda_emulation

void __syncthreads() {
  auto& s = cuda_emulation::state;
  const unsigned generation = s.block_generation;
  ++s.progress;
  if (++s.block_arrived == int(s.fibers.size())) {
    s.block_arrived = 0;
    ++s.block_generation;
    for (auto& f : s.fibers) f.at_barrier = false;
    return;
  }
  s.fibers[s.current].at_barrier = true;
  while (s.block_generation == generation) cuda_emulation::yield();
}
