#include <omp.h>

#include <algorithm>
#include <vector>

#include "ops/cpu/parallel_min.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
// Calls f(i, ia, ib) for each flat index i of `shape` with the matching offsets of two operands.
template <class F>
void for_each_index(const int64_t* shape, int rank, const int64_t* sa, const int64_t* sb, F f) {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  if (n == 0) return;
  int64_t inner = rank ? shape[rank - 1] : 1;
  int64_t outer = n / inner;
  int64_t ia_in = rank ? sa[rank - 1] : 0, ib_in = rank ? sb[rank - 1] : 0;
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t ia = 0, ib = 0, rest = o;
    for (int d = rank - 2; d >= 0; --d) {
      int64_t idx = rest % shape[d];
      rest /= shape[d];
      ia += idx * sa[d];
      ib += idx * sb[d];
    }
    for (int64_t j = 0; j < inner; ++j) f(o * inner + j, ia + j * ia_in, ib + j * ib_in);
  }
}
}  // namespace

void fill_rows(float* y, const float* row, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = row[c];
}

void binary(Binary op, const float* a, const int64_t* stride_a, const float* b,
            const int64_t* stride_b, float* out, const int64_t* shape, int rank) {
  if (op == Binary::add)
    for_each_index(shape, rank, stride_a, stride_b,
                   [&](int64_t i, int64_t ia, int64_t ib) { out[i] = a[ia] + b[ib]; });
  else
    for_each_index(shape, rank, stride_a, stride_b,
                   [&](int64_t i, int64_t ia, int64_t ib) { out[i] = a[ia] * b[ib]; });
}

void reduce_add(const float* src, const int64_t* shape, int rank, float* dst,
                const int64_t* stride_dst) {
  // Serial: several source elements may land on one destination element, and a fixed order
  // keeps results reproducible.
  std::vector<int64_t> idx(rank, 0);
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    dst[off] += src[i];
    for (int d = rank - 1; d >= 0; --d) {
      off += stride_dst[d];
      if (++idx[d] < shape[d]) break;
      off -= stride_dst[d] * shape[d];
      idx[d] = 0;
    }
  }
}

void reduce_rows_add(const float* src, int64_t rows, int64_t n, float* dst) {
  // Threads take column blocks; each element still sums its rows in order.
  constexpr int64_t kBlock = 256;
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements && n > kBlock)
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    int64_t j1 = std::min(n, j0 + kBlock);
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = src + r * n;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) dst[j] += row[j];
    }
  }
}

// Walks the last axis as rows, each product added in row-major order as the cuda kernel adds
// them (the same bits on both devices); where dst is broadcast along the last axis (stride 0, as
// for a [M, 1] factor), a row's sum stays in a register instead of going through memory.
void reduce_mul_add(const float* src, const float* other, const int64_t* stride_other,
                    const int64_t* shape, int rank, float* dst, const int64_t* stride_dst) {
  if (rank == 0) {
    dst[0] += src[0] * other[0];
    return;
  }
  const int last = rank - 1;
  const int64_t cols = shape[last], sd = stride_dst[last], so = stride_other[last];
  int64_t rows = 1;
  for (int d = 0; d < last; ++d) rows *= shape[d];
  if (rows == 0 || cols == 0) return;
  std::vector<int64_t> idx(size_t(last), 0);  // over the axes before the last
  int64_t od = 0, oo = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * cols;  // [cols]
    if (sd == 0) {
      float acc = dst[od];
      for (int64_t j = 0; j < cols; ++j) acc += s[j] * other[oo + j * so];
      dst[od] = acc;
    } else {
      for (int64_t j = 0; j < cols; ++j) dst[od + j * sd] += s[j] * other[oo + j * so];
    }
    for (int d = last - 1; d >= 0; --d) {
      od += stride_dst[d];
      oo += stride_other[d];
      if (++idx[size_t(d)] < shape[d]) break;
      od -= stride_dst[d] * shape[d];
      oo -= stride_other[d] * shape[d];
      idx[size_t(d)] = 0;
    }
  }
}

void scale(const float* x, float s, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void sum(const float* x, int64_t n, float* out) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  out[0] = float(s);
}

void sum_squares(const std::vector<const float*>& xs, const std::vector<int64_t>& ns,
                 double* totals) {
  // Fixed-size chunks summed in order: the same result for any thread count.
  constexpr int64_t kChunk = 1 << 14;
  for (size_t t = 0; t < xs.size(); ++t) {
    const float* x = xs[t];
    const int64_t n = ns[t], chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
    for (int64_t c = 0; c < chunks; ++c) {
      double s = 0;
      int64_t end = std::min(n, (c + 1) * kChunk);
      for (int64_t i = c * kChunk; i < end; ++i) s += double(x[i]) * x[i];
      partial[c] = s;
    }
    double s = 0;
    for (double p : partial) s += p;
    totals[t] = s;
  }
}

QKV_REGISTER_KERNEL(fill_rows, Device::cpu, float, fill_rows);
QKV_REGISTER_KERNEL(binary, Device::cpu, float, binary);
QKV_REGISTER_KERNEL(reduce_add, Device::cpu, float, reduce_add);
QKV_REGISTER_KERNEL(reduce_rows_add, Device::cpu, float, reduce_rows_add);
QKV_REGISTER_KERNEL(reduce_mul_add, Device::cpu, float, reduce_mul_add);
QKV_REGISTER_KERNEL(scale, Device::cpu, float, scale);
QKV_REGISTER_KERNEL(axpy, Device::cpu, float, axpy);
QKV_REGISTER_KERNEL(sum, Device::cpu, float, sum);
QKV_REGISTER_KERNEL(sum_squares, Device::cpu, float, sum_squares);

}  // namespace qkv::ops::cpu
