// Whether a piece of work pays for waking the other OpenMP threads. Opening a parallel region
// costs about 1 us while idle threads spin (OMP_WAIT_POLICY=active, or libgomp's default between
// close regions) but 30-55 us on the 2-core VMs here while they sleep (passive) and the idle
// virtual CPU has to be woken: a threshold fixed in multiply-adds fits one of the two. So the
// cost is measured once per process, and a kernel that knows its own speed asks whether its
// work, timed on one thread, is worth it.
#pragma once
#include <cstdint>

namespace qkv::ops::cpu {

// The wall time of one empty parallel region on all threads (the median of a few, measured on
// the first call outside any parallel region); 0 inside one, where regions run on one thread.
double fork_join_seconds();

// Whether work that takes `seconds` on one thread finishes sooner on omp_get_max_threads()
// threads: its share of the time, plus the cost of the region, is less than the whole.
bool threads_pay_off(double seconds);

// threads_pay_off for a product of m x n x k multiply-adds by a kernel that makes
// `macs_per_second` of them on one thread.
inline bool product_pays_for_threads(int64_t m, int64_t n, int64_t k, double macs_per_second) {
  return threads_pay_off(double(m) * double(n) * double(k) / macs_per_second);
}

}  // namespace qkv::ops::cpu
