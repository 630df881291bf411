// The cuBLAS products of the emulated backend, from the cuBLAS documentation: column-major
// C = alpha op(A) op(B) + beta C per batch entry (C not read when beta is 0), with its argument
// checks; each sum in double. The operands must be device memory.
#include <cstdio>
#include <string>

#include "include/cublas_v2.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

// Element (row, col) of a column-major operand of type `type`.
double element(const void* base, cudaDataType type, int64_t index) {
  switch (type) {
    case CUDA_R_32F:
      return static_cast<const float*>(base)[index];
    case CUDA_R_16BF:
      return float(static_cast<const __nv_bfloat16*>(base)[index]);
    case CUDA_R_16F:
      return float(static_cast<const __half*>(base)[index]);
  }
  return 0;
}

size_t element_bytes(cudaDataType type) {
  return type == CUDA_R_32F ? 4 : 2;
}

// Whether the elements a product reads (or writes) lie in device memory: the first and last
// of each batch entry's span.
bool on_device(const void* base, cudaDataType type, int64_t rows, int64_t cols, int64_t ld,
               int64_t stride, int batch) {
  if (rows == 0 || cols == 0) return true;
  const char* p = static_cast<const char*>(base);
  const size_t bytes = element_bytes(type);
  for (int i = 0; i < batch; ++i) {
    const char* first = p + size_t(i * stride) * bytes;
    const char* last = first + size_t((cols - 1) * ld + rows - 1) * bytes;
    if (!cuda_emulation::is_device_pointer(first) || !cuda_emulation::is_device_pointer(last))
      return false;
  }
  return true;
}

cublasStatus_t gemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                    int m, int n, int k, float alpha, const void* a, cudaDataType a_type, int lda,
                    int64_t stride_a, const void* b, cudaDataType b_type, int ldb, int64_t stride_b,
                    float beta, float* c, int ldc, int64_t stride_c, int batch) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  const int a_rows = ta ? k : m, b_rows = tb ? n : k;  // as stored
  if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, a_rows) ||
      ldb < std::max(1, b_rows) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  cuda_emulation::DeviceAccess access("cuBLAS gemm");
  const int a_cols = ta ? m : k, b_cols = tb ? k : n;
  if (!on_device(a, a_type, k ? a_rows : 0, a_cols, lda, stride_a, batch) ||
      !on_device(b, b_type, k ? b_rows : 0, b_cols, ldb, stride_b, batch) ||
      !on_device(c, CUDA_R_32F, m, n, ldc, stride_c, batch)) {
    std::fprintf(stderr, "cuda emulation: a cuBLAS operand is not device memory\n");
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  for (int64_t e = 0; e < batch; ++e) {
    const char* ae = static_cast<const char*>(a) + e * stride_a * element_bytes(a_type);
    const char* be = static_cast<const char*>(b) + e * stride_b * element_bytes(b_type);
    float* ce = c + e * stride_c;
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        double sum = 0;
        for (int64_t l = 0; l < k; ++l)
          sum += element(ae, a_type, ta ? l + i * lda : i + l * lda) *
                 element(be, b_type, tb ? j + l * ldb : l + j * ldb);
        float& out = ce[i + j * ldc];
        out = beta == 0.f ? float(alpha * sum) : float(alpha * sum + double(beta) * out);
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "success" : "emulated cuBLAS error";
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* a, int lda,
                                         int64_t stride_a, const float* b, int ldb,
                                         int64_t stride_b, const float* beta, float* c, int ldc,
                                         int64_t stride_c, int batch) {
  return gemm(handle, transa, transb, m, n, k, *alpha, a, CUDA_R_32F, lda, stride_a, b, CUDA_R_32F,
              ldb, stride_b, *beta, c, ldc, stride_c, batch);
}

cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const void* alpha, const void* a, cudaDataType a_type, int lda, int64_t stride_a, const void* b,
    cudaDataType b_type, int ldb, int64_t stride_b, const void* beta, void* c, cudaDataType c_type,
    int ldc, int64_t stride_c, int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
  // What qkv asks for: f32 or half inputs of one type, f32 output, f32 compute (float scalars).
  if (a_type != b_type || c_type != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  return gemm(handle, transa, transb, m, n, k, *static_cast<const float*>(alpha), a, a_type, lda,
              stride_a, b, b_type, ldb, stride_b, *static_cast<const float*>(beta),
              static_cast<float*>(c), ldc, stride_c, batch);
}
