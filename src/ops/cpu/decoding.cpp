// Copies and argmax of incremental decoding: KV-cache rows, beam reordering, greedy picks.
#include <cstring>

#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
// memmove: an in-place KV-cache gather may copy between rows of one buffer.
template <typename T>
void copy_rows(T* dst, int64_t dst_pitch, const T* src, int64_t src_pitch, int64_t width,
               int64_t height) {
  for (int64_t r = 0; r < height; ++r)
    std::memmove(dst + r * dst_pitch, src + r * src_pitch, size_t(width) * sizeof(T));
}

template <typename T>
void gather_rows(const T* x, const int32_t* index, int64_t m, int64_t row, T* y) {
  for (int64_t i = 0; i < m; ++i)
    std::memcpy(y + i * row, x + int64_t(index[i]) * row, size_t(row) * sizeof(T));
}

void argmax_rows(const float* x, int64_t n, int64_t v, int32_t* y) {
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < v; ++j)
      if (x[i * v + j] > x[i * v + best]) best = j;
    y[i] = int32_t(best);
  }
}
}  // namespace

QKV_REGISTER_KERNEL(copy_rows, Device::cpu, float, copy_rows<float>);
QKV_REGISTER_KERNEL(copy_rows, Device::cpu, bf16, copy_rows<bf16>);
QKV_REGISTER_KERNEL(copy_rows, Device::cpu, f16, copy_rows<f16>);
QKV_REGISTER_KERNEL(gather_rows, Device::cpu, float, gather_rows<float>);
QKV_REGISTER_KERNEL(gather_rows, Device::cpu, bf16, gather_rows<bf16>);
QKV_REGISTER_KERNEL(gather_rows, Device::cpu, f16, gather_rows<f16>);
QKV_REGISTER_KERNEL(gather_rows, Device::cpu, int32_t, gather_rows<int32_t>);
QKV_REGISTER_KERNEL(gather_rows, Device::cpu, int64_t, gather_rows<int64_t>);
QKV_REGISTER_KERNEL(gather_rows, Device::cpu, uint8_t, gather_rows<uint8_t>);
QKV_REGISTER_KERNEL(argmax_rows, Device::cpu, float, argmax_rows);

}  // namespace qkv::ops::cpu
