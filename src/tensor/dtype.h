// Element types and devices a Tensor can hold.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace qkv {

enum class DType : uint8_t { f32, f16, bf16, i32, i64, u8 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
// safetensors names: "F32", "BF16", "I32", ...
std::string dtype_name(DType t);
// Throws std::runtime_error naming `name` when it is not a dtype qkv knows.
DType dtype_from_name(const std::string& name);
std::string device_name(Device d);

// bfloat16 storage: the upper 16 bits of an IEEE float, rounded to nearest even.
struct bf16 {
  uint16_t bits;
};
inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}
inline float from_bf16(bf16 h) {
  uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace qkv
