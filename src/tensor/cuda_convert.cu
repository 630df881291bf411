// Tensor::cast and Tensor::fill for tensors on cuda: the conversions of tensor/dtype.h, bit for
// bit (the same rounding to nearest even and the same NaN and subnormal handling).
#include "tensor/cuda_stream.h"
#include "tensor/dtype.h"

namespace qkv {

namespace {
using cuda::check_launch;
using cuda::grid_for;
using cuda::kThreads;
using cuda::stream;

__device__ uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

__device__ float bf16_to_f32(uint16_t h) {
  return __uint_as_float(uint32_t(h) << 16);
}

__device__ uint16_t f32_to_f16(float f) {
  uint32_t u = __float_as_uint(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  int32_t exp = int32_t((u >> 23) & 0xffu);
  uint32_t mant = u & 0x7fffffu;
  if (exp == 0xff) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));  // inf, NaN
  int32_t e = exp - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7c00u);
  if (e <= 0) {  // subnormal half (or zero)
    if (e < -10) return sign;
    mant |= 0x800000u;
    int32_t shift = 14 - e;
    uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = uint32_t(sign) | uint32_t(e << 10) | (mant >> 13), rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into inf
  return uint16_t(half);
}

__device__ float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0)
    return __uint_as_float(__float_as_uint(float(mant) * 5.9604644775390625e-8f) | sign);
  if (exp == 31) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
  return __uint_as_float(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

// One conversion per pair of dtypes: Convert::operator() maps a From to a To.
struct ToBf16 {
  __device__ uint16_t operator()(float x) const { return f32_to_bf16(x); }
};
struct FromBf16 {
  __device__ float operator()(uint16_t x) const { return bf16_to_f32(x); }
};
struct ToF16 {
  __device__ uint16_t operator()(float x) const { return f32_to_f16(x); }
};
struct FromF16 {
  __device__ float operator()(uint16_t x) const { return f16_to_f32(x); }
};
struct IntToFloat {
  __device__ float operator()(int32_t x) const { return float(x); }
};
struct Narrow {
  __device__ int32_t operator()(int64_t x) const { return int32_t(x); }
};

template <class From, class To, class Convert>
__global__ void convert_kernel(const From* src, To* dst, int64_t n) {
  QKV_GRID_LOOP(i, n) dst[i] = Convert()(src[i]);
}

template <class From, class To, class Convert>
void convert(const void* src, void* dst, int64_t n) {
  convert_kernel<From, To, Convert><<<grid_for(n), kThreads, 0, stream()>>>(
      static_cast<const From*>(src), static_cast<To*>(dst), n);
  check_launch("Tensor::cast");
}

template <class T>
__global__ void fill_kernel(T* dst, T value, int64_t n) {
  QKV_GRID_LOOP(i, n) dst[i] = value;
}
}  // namespace

// The pairs Tensor::cast supports (it checks them first).
void cuda_cast(const void* src, DType from, void* dst, DType to, int64_t n) {
  if (n == 0) return;
  if (from == DType::f32 && to == DType::bf16)
    convert<float, uint16_t, ToBf16>(src, dst, n);
  else if (from == DType::bf16 && to == DType::f32)
    convert<uint16_t, float, FromBf16>(src, dst, n);
  else if (from == DType::f32 && to == DType::f16)
    convert<float, uint16_t, ToF16>(src, dst, n);
  else if (from == DType::f16 && to == DType::f32)
    convert<uint16_t, float, FromF16>(src, dst, n);
  else if (from == DType::i32 && to == DType::f32)
    convert<int32_t, float, IntToFloat>(src, dst, n);
  else if (from == DType::i64 && to == DType::i32)
    convert<int64_t, int32_t, Narrow>(src, dst, n);
}

// F32 or I32 (Tensor::fill checks).
void cuda_fill(void* dst, DType dtype, float value, int64_t n) {
  if (n == 0) return;
  if (dtype == DType::f32)
    fill_kernel<float><<<grid_for(n), kThreads, 0, stream()>>>(static_cast<float*>(dst), value, n);
  else
    fill_kernel<int32_t>
        <<<grid_for(n), kThreads, 0, stream()>>>(static_cast<int32_t*>(dst), int32_t(value), n);
  check_launch("Tensor::fill");
}

}  // namespace qkv
