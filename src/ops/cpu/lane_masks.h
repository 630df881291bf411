// Masks of AVX-512's 16 lanes for the tails of loops over floats or int32 (the int8 and bf16
// kernels): the first `count` lanes, none for a count of 0 or less.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace qkv::ops::cpu {

inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

}  // namespace qkv::ops::cpu
