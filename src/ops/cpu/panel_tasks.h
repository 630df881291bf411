// How the low-precision linear kernels (linear_int8.cpp, linear_bf16.cpp) split a product
// y [m, n] on a weight packed in panels of 16 outputs: rows in blocks of nearly equal size for
// the micro-kernels, and over the threads, blocks of panels that stay in L2 while chunks of rows
// stream over them.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace qkv::ops::cpu {

constexpr int64_t kPanel = 16;              // outputs per packed panel
constexpr int64_t kRows = 6;                // rows per micro-kernel call
constexpr int64_t kBlockBytes = 128 << 10;  // packed weight per thread block: half of L2
constexpr int64_t kRowChunk = 8 * kRows;    // rows a task runs over one block of panels

// Rows of x in blocks of nearly equal size (32 = 6 6 5 5 5 5, not 6 6 6 6 6 2): a small block
// runs the micro-kernel at a fraction of its speed. Block j starts at row_of(j).
struct RowBlocks {
  int64_t count, size, extra;  // count blocks, the first `extra` of size + 1 rows
  explicit RowBlocks(int64_t m)
      : count((m + kRows - 1) / kRows),
        size(m / std::max<int64_t>(count, 1)),
        extra(m % std::max<int64_t>(count, 1)) {}
  int64_t row_of(int64_t j) const { return j * size + std::min(j, extra); }
};

// Calls body(p0, p1, row_blocks, j0, j1) for tasks of panels [p0, p1) x row blocks [j0, j1),
// on the threads when `parallel`, then with at least one panel block per thread.
template <class Body>
void for_each_task(int64_t m, int64_t panels, int64_t panel_bytes, bool parallel, Body body) {
  RowBlocks rb(m);
  int64_t per_block = std::max<int64_t>(1, kBlockBytes / std::max<int64_t>(panel_bytes, 1));
  if (parallel) {
    int64_t threads = omp_get_max_threads();
    per_block = std::min(per_block, (panels + threads - 1) / threads);
  }
  int64_t panel_blocks = (panels + per_block - 1) / per_block;
  int64_t chunk = kRowChunk / kRows, row_chunks = (rb.count + chunk - 1) / chunk;
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int64_t pb = 0; pb < panel_blocks; ++pb)
    for (int64_t rc = 0; rc < row_chunks; ++rc) {
      int64_t j0 = rc * chunk, j1 = std::min(rb.count, j0 + chunk);
      body(pb * per_block, std::min(panels, (pb + 1) * per_block), rb, j0, j1);
    }
}

}  // namespace qkv::ops::cpu
