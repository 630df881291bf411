// Layout kernels: permute (axes reordered) and concatenation / splitting along an axis.
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
constexpr int kMaxPermuteRank = 6;

// Output axis i has size[i] and steps stride[i] elements in x.
struct PermuteWalk {
  int rank;
  int64_t size[kMaxPermuteRank], stride[kMaxPermuteRank];
};

template <bool accumulate>
__global__ void permute_kernel(const float* x, PermuteWalk w, float* y, int64_t n) {
  QKV_GRID_LOOP(o, n) {
    int64_t from = 0, rest = o;
    for (int a = w.rank - 1; a >= 0; --a) {
      from += (rest % w.size[a]) * w.stride[a];
      rest /= w.size[a];
    }
    if (accumulate)
      y[o] += x[from];
    else
      y[o] = x[from];
  }
}

// dst[o * dst_ld + j] (+)= src[o * src_ld + j] for o < outer, j < width.
template <bool accumulate>
__global__ void copy_block_kernel(const float* src, int64_t src_ld, float* dst, int64_t dst_ld,
                                  int64_t outer, int64_t width) {
  QKV_GRID_LOOP(i, outer * width) {
    int64_t o = i / width, j = i % width;
    if (accumulate)
      dst[o * dst_ld + j] += src[o * src_ld + j];
    else
      dst[o * dst_ld + j] = src[o * src_ld + j];
  }
}

void copy_block(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t outer,
                int64_t width, bool accumulate) {
  if (outer * width == 0) return;
  if (accumulate)
    copy_block_kernel<true><<<grid_for(outer * width), kThreads, 0, stream()>>>(
        src, src_ld, dst, dst_ld, outer, width);
  else
    copy_block_kernel<false><<<grid_for(outer * width), kThreads, 0, stream()>>>(
        src, src_ld, dst, dst_ld, outer, width);
  check_launch("copy_block");
}
}  // namespace

void permute(const float* x, const int64_t* shape, int rank, const int* dims, float* y,
             bool accumulate) {
  PermuteWalk w{};
  w.rank = rank;
  int64_t x_stride[kMaxPermuteRank], s = 1, n = 1;
  for (int a = rank - 1; a >= 0; --a) x_stride[a] = s, s *= shape[a];
  for (int i = 0; i < rank; ++i) {
    w.size[i] = shape[dims[i]];
    w.stride[i] = x_stride[dims[i]];
    n *= w.size[i];
  }
  if (n == 0) return;
  if (accumulate)
    permute_kernel<true><<<grid_for(n), kThreads, 0, stream()>>>(x, w, y, n);
  else
    permute_kernel<false><<<grid_for(n), kThreads, 0, stream()>>>(x, w, y, n);
  check_launch("permute");
}

void join_rows(const float* const* parts, const int64_t* widths, int n, int64_t outer, float* dst,
               bool accumulate) {
  int64_t row = 0, column = 0;
  for (int i = 0; i < n; ++i) row += widths[i];
  for (int i = 0; i < n; ++i) {
    if (parts[i]) copy_block(parts[i], widths[i], dst + column, row, outer, widths[i], accumulate);
    column += widths[i];
  }
}

void split_rows(const float* src, const int64_t* widths, int n, int64_t outer, float* const* parts,
                bool accumulate) {
  int64_t row = 0, column = 0;
  for (int i = 0; i < n; ++i) row += widths[i];
  for (int i = 0; i < n; ++i) {
    if (parts[i]) copy_block(src + column, row, parts[i], widths[i], outer, widths[i], accumulate);
    column += widths[i];
  }
}

QKV_REGISTER_KERNEL(permute, Device::cuda, float, permute);
QKV_REGISTER_KERNEL(join_rows, Device::cuda, float, join_rows);
QKV_REGISTER_KERNEL(split_rows, Device::cuda, float, split_rows);

}  // namespace qkv::ops::cuda
