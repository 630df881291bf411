// Layout kernels: permute (axes reordered) and concatenation / splitting along an axis.
#include <omp.h>

#include <cstring>

#include "ops/cpu/parallel_min.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int kMaxRank = 6;

// The permutation as a walk over x: output axis i has size[i] and steps stride[i] elements in x.
// Axes of size 1 are dropped and output axes that are neighbours in x too are merged, so the
// head split [B, L, H, D] -> [B, H, L, D] becomes rows of D contiguous elements.
struct Walk {
  int rank = 0;
  int64_t size[kMaxRank], stride[kMaxRank];
};

Walk simplify(const int64_t* shape, int rank, const int* dims) {
  int64_t x_stride[kMaxRank];
  int64_t s = 1;
  for (int a = rank - 1; a >= 0; --a) x_stride[a] = s, s *= shape[a];
  Walk w;
  for (int i = 0; i < rank; ++i) {
    int64_t size = shape[dims[i]], stride = x_stride[dims[i]];
    if (size == 1) continue;
    if (w.rank > 0 && w.stride[w.rank - 1] == size * stride) {
      w.size[w.rank - 1] *= size;
      w.stride[w.rank - 1] = stride;
    } else {
      w.size[w.rank] = size, w.stride[w.rank] = stride, ++w.rank;
    }
  }
  if (w.rank == 0) w.size[0] = 1, w.stride[0] = 1, w.rank = 1;
  return w;
}
}  // namespace

void permute(const float* x, const int64_t* shape, int rank, const int* dims, float* y,
             bool accumulate) {
  int64_t n = 1;
  for (int a = 0; a < rank; ++a) n *= shape[a];
  if (n == 0) return;
  Walk w = simplify(shape, rank, dims);
  int64_t inner = w.size[w.rank - 1], step = w.stride[w.rank - 1], outer = n / inner;
#pragma omp parallel if (n > kParallelMinElements)
  {
    // This thread's output rows [begin, end); their index along each outer axis advances like
    // an odometer (divisions per row cost more than copying a head's 16 floats).
    int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t begin = outer * t / threads, end = outer * (t + 1) / threads;
    int64_t index[kMaxRank] = {}, from = 0, rest = begin;
    for (int a = w.rank - 2; a >= 0; --a) {
      index[a] = rest % w.size[a];
      rest /= w.size[a];
      from += index[a] * w.stride[a];
    }
    for (int64_t o = begin; o < end; ++o) {
      const float* src = x + from;
      float* dst = y + o * inner;
      if (accumulate) {
        for (int64_t j = 0; j < inner; ++j) dst[j] += src[j * step];
      } else if (step == 1) {
        std::memcpy(dst, src, size_t(inner) * sizeof(float));
      } else {
        for (int64_t j = 0; j < inner; ++j) dst[j] = src[j * step];
      }
      for (int a = w.rank - 2; a >= 0; --a) {  // the next row's offset in x
        from += w.stride[a];
        if (++index[a] < w.size[a]) break;
        from -= index[a] * w.stride[a];
        index[a] = 0;
      }
    }
  }
}

void join_rows(const float* const* parts, const int64_t* widths, int n, int64_t outer, float* dst,
               bool accumulate) {
  int64_t row = 0;
  for (int i = 0; i < n; ++i) row += widths[i];
#pragma omp parallel for schedule(static) if (outer * row > kParallelMinElements)
  for (int64_t o = 0; o < outer; ++o) {
    float* out = dst + o * row;
    for (int i = 0; i < n; ++i) {
      int64_t w = widths[i];
      if (parts[i]) {
        const float* in = parts[i] + o * w;
        if (accumulate)
          for (int64_t j = 0; j < w; ++j) out[j] += in[j];
        else
          std::memcpy(out, in, size_t(w) * sizeof(float));
      }
      out += w;
    }
  }
}

void split_rows(const float* src, const int64_t* widths, int n, int64_t outer, float* const* parts,
                bool accumulate) {
  int64_t row = 0;
  for (int i = 0; i < n; ++i) row += widths[i];
#pragma omp parallel for schedule(static) if (outer * row > kParallelMinElements)
  for (int64_t o = 0; o < outer; ++o) {
    const float* in = src + o * row;
    for (int i = 0; i < n; ++i) {
      int64_t w = widths[i];
      if (parts[i]) {
        float* out = parts[i] + o * w;
        if (accumulate)
          for (int64_t j = 0; j < w; ++j) out[j] += in[j];
        else
          std::memcpy(out, in, size_t(w) * sizeof(float));
      }
      in += w;
    }
  }
}

QKV_REGISTER_KERNEL(permute, Device::cpu, float, permute);
QKV_REGISTER_KERNEL(join_rows, Device::cpu, float, join_rows);
QKV_REGISTER_KERNEL(split_rows, Device::cpu, float, split_rows);

}  // namespace qkv::ops::cpu
