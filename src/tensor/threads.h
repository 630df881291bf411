// One setting drives every thread pool: OpenMP loops and OpenBLAS (the OpenMP build).
#pragma once

namespace qkv {
// n <= 0 keeps the default (all cores, or OMP_NUM_THREADS).
void set_num_threads(int n);
int num_threads();
}  // namespace qkv
