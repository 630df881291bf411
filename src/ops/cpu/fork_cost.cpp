#include "ops/cpu/fork_cost.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>

namespace qkv::ops::cpu {

namespace {
volatile int threads_woken;

double measure_fork_join() {
  using Clock = std::chrono::steady_clock;
  std::array<double, 9> times;
  for (int i = -1; i < int(times.size()); ++i) {  // one to start the threads, then timed
    auto start = Clock::now();
    // Next to nothing to do, kept (the compiler drops an empty region): the cost is starting,
    // waking and joining the threads.
    int woken = 0;
#pragma omp parallel reduction(+ : woken)
    woken += 1;
    threads_woken = woken;
    if (i >= 0) times[i] = std::chrono::duration<double>(Clock::now() - start).count();
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}
}  // namespace

double fork_join_seconds() {
  if (omp_in_parallel()) return 0.;
  static const double seconds = measure_fork_join();
  return seconds;
}

bool threads_pay_off(double seconds) {
  // Splitting costs more than the empty region: the threads' shares end at different times, and
  // their outputs move between caches. kSplitSeconds is that, as greedy decoding with spinning
  // threads measured it (products of a few microseconds split made it slower).
  constexpr double kSplitSeconds = 10e-6;
  int threads = omp_get_max_threads();
  return threads > 1 && !omp_in_parallel() &&
         seconds / threads + fork_join_seconds() + kSplitSeconds < seconds;
}

}  // namespace qkv::ops::cpu
