// How much work a memory-bound loop needs before it is split over threads. Opening an OpenMP
// region costs 1-2 us while idle threads spin, but 45-55 us on the 2-core VMs here while they
// sleep (OMP_WAIT_POLICY=passive, as bench/run.sh runs); one thread adds, copies or normalises
// 2^16 floats in about that time. Beam search at batch 32 (160 rows of 256) thus ran faster
// with its adds, norms and permutes on one thread.
#pragma once
#include <cstdint>

namespace qkv::ops::cpu {
constexpr int64_t kParallelMinElements = 1 << 16;
}  // namespace qkv::ops::cpu
