#include "ops/cpu/gemm.h"

#include <cblas.h>

#include "ops/cpu/low_precision.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"
#include "ops/precision.h"

namespace qkv::ops::cpu {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}

void batched_gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                  float alpha, const float* a, int64_t stride_a, const float* b, int64_t stride_b,
                  float beta, float* c, int64_t stride_c) {
  int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
  bool bf16 = matmul_precision() == MatmulPrecision::bf16;  // inside a bf16 AutocastScope
  for (int64_t i = 0; i < batch; ++i) {
    const float *ai = a + i * stride_a, *bi = b + i * stride_b;
    float* ci = c + i * stride_c;
    if (bf16)
      gemm_bf16(trans_a, trans_b, m, n, k, alpha, ai, lda, bi, ldb, beta, ci, n, cpu_isa());
    else
      gemm(trans_a, trans_b, m, n, k, alpha, ai, lda, bi, ldb, beta, ci, n);
  }
}
QKV_REGISTER_KERNEL(batched_gemm, Device::cpu, float, batched_gemm);

}  // namespace qkv::ops::cpu
