// The one sgemm the CPU kernels build on (OpenBLAS), with leading dimensions.
#pragma once
#include <cstdint>

namespace qkv::ops::cpu {

// Row-major: c[m, n] = alpha * op(a) @ op(b) + beta * c.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace qkv::ops::cpu
