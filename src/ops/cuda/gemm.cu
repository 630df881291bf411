// Matrix products through cuBLAS. cuBLAS is column-major; a row-major matrix [r, c] is the
// column-major matrix [c, r] with the same leading dimension. So the row-major product
// c = op(a) @ op(b) is computed as the column-major c^T = op(b)^T @ op(a)^T: cuBLAS gets b
// first, a second, m and n swapped, and the same transpose flags.
//
// Autocast (ops/precision.h): inside a bf16 scope each product rounds its two f32 operands to
// bf16 copies (one cast kernel each, into scratch from the caching allocator) and runs
// cublasGemmStridedBatchedEx with bf16 inputs, f32 accumulation (CUBLAS_COMPUTE_32F) and the f32
// output c, so beta = 1 still accumulates into f32 gradients. The casts are per call, nothing is
// cached: a weight changes at every update, and its cast (6 bytes of traffic per element) is
// small next to the product it feeds (2 * rows FLOPs per element, rows = 8k tokens in training).
#include <cuda_bf16.h>

#include <algorithm>

#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"
#include "ops/precision.h"
#include "tensor/allocator.h"

namespace qkv::ops::cuda {

namespace {
cublasOperation_t op_of(bool trans) {
  return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}
// cuBLAS wants leading dimensions >= 1 even for empty matrices.
int ld(int64_t v) {
  return int(std::max<int64_t>(v, 1));
}

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, int64_t n) {
  QKV_GRID_LOOP(i, n) y[i] = __float2bfloat16_rn(x[i]);
}

// A bf16 copy of n > 0 floats in scratch from the caching allocator. It goes back to the
// allocator when the product is queued, not done: safe, because every later use of the block
// is queued after the product on the one stream (context.h).
class Bf16Copy {
 public:
  Bf16Copy(const float* x, int64_t n) : alloc_(allocator_for(Device::cuda)) {
    ptr_ = alloc_.allocate(size_t(n) * sizeof(__nv_bfloat16), &capacity_);
    to_bf16_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, static_cast<__nv_bfloat16*>(ptr_), n);
    check_launch("autocast to_bf16");
  }
  ~Bf16Copy() { alloc_.deallocate(ptr_, capacity_); }
  Bf16Copy(const Bf16Copy&) = delete;
  Bf16Copy& operator=(const Bf16Copy&) = delete;
  const void* get() const { return ptr_; }

 private:
  CachingAllocator& alloc_;
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// Elements a strided batch of rows x cols matrices spans.
int64_t span(int64_t batch, int64_t stride, int64_t rows, int64_t cols) {
  return (batch - 1) * stride + rows * cols;
}
}  // namespace

void batched_gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* a, int64_t stride_a, const float* b, int64_t stride_b,
                  float beta, float* c, int64_t stride_c) {
  if (batch == 0 || m == 0 || n == 0) return;
  int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;  // row-major, as cpu::batched_gemm
  if (k > 0 && matmul_precision() == MatmulPrecision::bf16) {
    Bf16Copy a16(a, span(batch, stride_a, m, k)), b16(b, span(batch, stride_b, k, n));
    check(cublasGemmStridedBatchedEx(
              cublas(), op_of(trans_b), op_of(trans_a), int(n), int(m), int(k), &alpha, b16.get(),
              CUDA_R_16BF, ld(ldb), stride_b, a16.get(), CUDA_R_16BF, ld(lda), stride_a, &beta, c,
              CUDA_R_32F, ld(n), stride_c, int(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx (bf16)");
    return;
  }
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

QKV_REGISTER_KERNEL(batched_gemm, Device::cuda, float, batched_gemm);
QKV_REGISTER_KERNEL(fill_rows, Device::cuda, float, fill_rows);

}  // namespace qkv::ops::cuda
