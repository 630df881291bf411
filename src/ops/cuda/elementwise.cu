// Broadcast arithmetic, reductions to a broadcast operand, scale, axpy and whole-tensor sums.
#include <stdexcept>
#include <string>

#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"
#include "tensor/tensor.h"

namespace qkv::ops::cuda {

namespace {
constexpr int kMaxRank = 8;  // of the broadcast operands, carried to the kernels by value

void check_rank(const char* op, int rank) {
  if (rank > kMaxRank)
    throw std::invalid_argument(std::string(op) + ": rank " + std::to_string(rank) +
                                " above the CUDA kernels' " + std::to_string(kMaxRank));
}

// Shapes and strides travel to the kernels by value.
struct BinaryLayout {
  int rank;
  int64_t shape[kMaxRank], stride_a[kMaxRank], stride_b[kMaxRank];
};

template <Binary op>
__global__ void binary_kernel(const float* a, const float* b, float* out, BinaryLayout l,
                              int64_t n) {
  QKV_GRID_LOOP(i, n) {
    int64_t ia = 0, ib = 0, rest = i;
    for (int d = l.rank - 1; d >= 0; --d) {
      int64_t idx = rest % l.shape[d];
      rest /= l.shape[d];
      ia += idx * l.stride_a[d];
      ib += idx * l.stride_b[d];
    }
    out[i] = op == Binary::add ? a[ia] + b[ib] : a[ia] * b[ib];
  }
}

// The axes of src split into kept ones (dst stride != 0: one thread per dst element walks
// them) and summed ones (dst stride 0: each thread loops over them, row-major).
struct ReduceLayout {
  int kept_rank, summed_rank;
  int64_t kept_size[kMaxRank], kept_src[kMaxRank], kept_dst[kMaxRank], kept_other[kMaxRank];
  int64_t summed_size[kMaxRank], summed_src[kMaxRank], summed_other[kMaxRank];
  int64_t summed_count;
};

// dst[id] += sum over the summed axes of src[i] (* other[io] when other is not null), added to
// dst one by one in row-major order, as the CPU does.
__global__ void reduce_kernel(const float* src, const float* other, float* dst, ReduceLayout l,
                              int64_t kept_count) {
  QKV_GRID_LOOP(t, kept_count) {
    int64_t src_base = 0, dst_at = 0, other_base = 0, rest = t;
    for (int d = l.kept_rank - 1; d >= 0; --d) {
      int64_t idx = rest % l.kept_size[d];
      rest /= l.kept_size[d];
      src_base += idx * l.kept_src[d];
      dst_at += idx * l.kept_dst[d];
      other_base += idx * l.kept_other[d];
    }
    float acc = dst[dst_at];
    for (int64_t r = 0; r < l.summed_count; ++r) {
      int64_t src_at = src_base, other_at = other_base, rest_r = r;
      for (int d = l.summed_rank - 1; d >= 0; --d) {
        int64_t idx = rest_r % l.summed_size[d];
        rest_r /= l.summed_size[d];
        src_at += idx * l.summed_src[d];
        other_at += idx * l.summed_other[d];
      }
      acc += other ? src[src_at] * other[other_at] : src[src_at];
    }
    dst[dst_at] = acc;
  }
}

void reduce(const char* op, const float* src, const float* other, const int64_t* stride_other,
            const int64_t* shape, int rank, float* dst, const int64_t* stride_dst) {
  check_rank(op, rank);
  ReduceLayout l{};
  l.summed_count = 1;
  int64_t kept_count = 1, src_stride = 1;
  for (int d = rank - 1; d >= 0; --d) {  // innermost first, then reversed below
    if (stride_dst[d] != 0) {
      l.kept_size[l.kept_rank] = shape[d];
      l.kept_src[l.kept_rank] = src_stride;
      l.kept_dst[l.kept_rank] = stride_dst[d];
      l.kept_other[l.kept_rank] = stride_other ? stride_other[d] : 0;
      kept_count *= shape[d];
      ++l.kept_rank;
    } else {
      l.summed_size[l.summed_rank] = shape[d];
      l.summed_src[l.summed_rank] = src_stride;
      l.summed_other[l.summed_rank] = stride_other ? stride_other[d] : 0;
      l.summed_count *= shape[d];
      ++l.summed_rank;
    }
    src_stride *= shape[d];
  }
  // Outermost axis first, as the kernel's index arithmetic expects.
  auto reverse = [](int64_t* v, int n) {
    for (int i = 0, j = n - 1; i < j; ++i, --j) {
      int64_t t = v[i];
      v[i] = v[j];
      v[j] = t;
    }
  };
  for (int64_t* v : {l.kept_size, l.kept_src, l.kept_dst, l.kept_other}) reverse(v, l.kept_rank);
  for (int64_t* v : {l.summed_size, l.summed_src, l.summed_other}) reverse(v, l.summed_rank);
  if (kept_count == 0 || src_stride == 0) return;
  reduce_kernel<<<grid_for(kept_count), kThreads, 0, stream()>>>(src, other, dst, l, kept_count);
  check_launch(op);
}

// partial[j, c] = sum of src[r * n + c] over the rows of chunk j (blockIdx.y), in order.
__global__ void column_chunk_sums_kernel(const float* src, int64_t rows, int64_t n,
                                         ColumnChunks chunks, float* partial) {
  const int64_t j = blockIdx.y, r0 = j * chunks.rows, r1 = min(r0 + chunks.rows, rows);
  QKV_GRID_LOOP(c, n) {
    float acc = 0.f;
    for (int64_t r = r0; r < r1; ++r) acc += src[r * n + c];
    partial[j * n + c] = acc;
  }
}

// dst[c] += the sum over chunks of partial[j, c], chunks in order.
__global__ void add_chunk_sums_kernel(const float* partial, int64_t chunks, int64_t n, float* dst) {
  QKV_GRID_LOOP(c, n) {
    float acc = dst[c];
    for (int64_t j = 0; j < chunks; ++j) acc += partial[j * n + c];
    dst[c] = acc;
  }
}

__global__ void scale_kernel(const float* x, float s, float* y, int64_t n) {
  QKV_GRID_LOOP(i, n) y[i] = x[i] * s;
}

__global__ void axpy_kernel(float alpha, const float* x, float* y, int64_t n) {
  QKV_GRID_LOOP(i, n) y[i] += alpha * x[i];
}

// Whole-tensor sums in double: kSumBlocks blocks (a fixed number, so the order of additions
// does not depend on the device) write partial sums, then one block adds them.
constexpr int kSumBlocks = 256;

template <bool squares>
__global__ void partial_sums_kernel(const float* x, int64_t n, double* partial) {
  double acc = 0;
  QKV_GRID_LOOP(i, n) acc += squares ? double(x[i]) * double(x[i]) : double(x[i]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void total_kernel(const double* partial, double* total, float* total_f32) {
  double acc = block_sum(partial[threadIdx.x]);  // blockDim.x == kSumBlocks
  if (threadIdx.x == 0) {
    if (total) *total = acc;
    if (total_f32) *total_f32 = float(acc);
  }
}

// Sum (or sum of squares) of x into *total (double) and/or *total_f32, on the device.
template <bool squares>
void device_sum(const float* x, int64_t n, double* total, float* total_f32) {
  Tensor partial = Tensor::empty({kSumBlocks}, DType::i64, Device::cuda);  // 8-byte slots
  double* p = static_cast<double*>(partial.raw());
  partial_sums_kernel<squares><<<kSumBlocks, kThreads, 0, stream()>>>(x, n, p);
  check_launch("sum (partial sums)");
  total_kernel<<<1, kSumBlocks, 0, stream()>>>(p, total, total_f32);
  check_launch("sum (total)");
}
}  // namespace

void binary(Binary op, const float* a, const int64_t* stride_a, const float* b,
            const int64_t* stride_b, float* out, const int64_t* shape, int rank) {
  check_rank(op == Binary::add ? "add" : "mul", rank);
  BinaryLayout l{};
  l.rank = rank;
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) {
    l.shape[d] = shape[d];
    l.stride_a[d] = stride_a[d];
    l.stride_b[d] = stride_b[d];
    n *= shape[d];
  }
  if (n == 0) return;
  if (op == Binary::add)
    binary_kernel<Binary::add><<<grid_for(n), kThreads, 0, stream()>>>(a, b, out, l, n);
  else
    binary_kernel<Binary::mul><<<grid_for(n), kThreads, 0, stream()>>>(a, b, out, l, n);
  check_launch("binary");
}

void reduce_add(const float* src, const int64_t* shape, int rank, float* dst,
                const int64_t* stride_dst) {
  reduce("reduce_add", src, nullptr, nullptr, shape, rank, dst, stride_dst);
}

void reduce_mul_add(const float* src, const float* other, const int64_t* stride_other,
                    const int64_t* shape, int rank, float* dst, const int64_t* stride_dst) {
  reduce("reduce_mul_add", src, other, stride_other, shape, rank, dst, stride_dst);
}

void reduce_rows_add(const float* src, int64_t rows, int64_t n, float* dst) {
  if (n == 0 || rows == 0) return;
  const ColumnChunks chunks = column_chunks(rows);
  Tensor partial = Tensor::empty({chunks.count, n}, DType::f32, Device::cuda);
  column_chunk_sums_kernel<<<dim3(grid_for(n), unsigned(chunks.count)), kThreads, 0, stream()>>>(
      src, rows, n, chunks, partial.data<float>());
  check_launch("reduce_rows_add (chunks)");
  add_chunk_sums_kernel<<<grid_for(n), kThreads, 0, stream()>>>(partial.data<float>(), chunks.count,
                                                                n, dst);
  check_launch("reduce_rows_add");
}

void scale(const float* x, float s, float* y, int64_t n) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, s, y, n);
  check_launch("scale");
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  if (n == 0) return;
  axpy_kernel<<<grid_for(n), kThreads, 0, stream()>>>(alpha, x, y, n);
  check_launch("axpy");
}

void sum(const float* x, int64_t n, float* out) {
  device_sum<false>(x, n, nullptr, out);
}

void sum_squares(const std::vector<const float*>& xs, const std::vector<int64_t>& ns,
                 double* totals) {
  if (xs.empty()) return;
  const int64_t count = int64_t(xs.size());
  Tensor device_totals = Tensor::empty({count}, DType::i64, Device::cuda);  // 8-byte slots
  double* t = static_cast<double*>(device_totals.raw());
  for (int64_t i = 0; i < count; ++i) device_sum<true>(xs[i], ns[i], t + i, nullptr);
  check(
      cudaMemcpyAsync(totals, t, size_t(count) * sizeof(double), cudaMemcpyDeviceToHost, stream()),
      "sum_squares (copy to host)");
  check(cudaStreamSynchronize(stream()), "sum_squares (wait)");
}

QKV_REGISTER_KERNEL(binary, Device::cuda, float, binary);
QKV_REGISTER_KERNEL(reduce_add, Device::cuda, float, reduce_add);
QKV_REGISTER_KERNEL(reduce_rows_add, Device::cuda, float, reduce_rows_add);
QKV_REGISTER_KERNEL(reduce_mul_add, Device::cuda, float, reduce_mul_add);
QKV_REGISTER_KERNEL(scale, Device::cuda, float, scale);
QKV_REGISTER_KERNEL(axpy, Device::cuda, float, axpy);
QKV_REGISTER_KERNEL(sum, Device::cuda, float, sum);
QKV_REGISTER_KERNEL(sum_squares, Device::cuda, float, sum_squares);

}  // namespace qkv::ops::cuda
