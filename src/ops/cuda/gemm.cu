// Matrix products through cuBLAS. cuBLAS is column-major; a row-major matrix [r, c] is the
// column-major matrix [c, r] with the same leading dimension. So the row-major product
// c = op(a) @ op(b) is computed as the column-major c^T = op(b)^T @ op(a)^T: cuBLAS gets b
// first, a second, m and n swapped, and the same transpose flags.
#include <algorithm>

#include "ops/cuda/context.h"
#include "ops/cuda/kernels.h"

namespace qkv::ops::cuda {

namespace {
cublasOperation_t op_of(bool trans) {
  return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}
// cuBLAS wants leading dimensions >= 1 even for empty matrices.
int ld(int64_t v) {
  return int(std::max<int64_t>(v, 1));
}
}  // namespace

void batched_gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* a, int64_t stride_a, const float* b, int64_t stride_b,
                  float beta, float* c, int64_t stride_c) {
  if (batch == 0 || m == 0 || n == 0) return;
  int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;  // row-major, as cpu::batched_gemm
  check(cublasSgemmStridedBatched(cublas(), op_of(trans_b), op_of(trans_a), int(n), int(m), int(k),
                                  &alpha, b, ld(ldb), stride_b, a, ld(lda), stride_a, &beta, c,
                                  ld(n), stride_c, int(batch)),
        "cublasSgemmStridedBatched");
}

namespace {
__global__ void fill_rows_kernel(float* y, const float* row, int64_t rows, int64_t cols) {
  QKV_GRID_LOOP(i, rows * cols) y[i] = row[i % cols];
}
}  // namespace

void fill_rows(float* y, const float* row, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  fill_rows_kernel<<<grid_for(rows * cols), kThreads, 0, stream()>>>(y, row, rows, cols);
  check_launch("fill_rows");
}

}  // namespace qkv::ops::cuda
