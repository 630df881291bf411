// Per-thread scratch memory for CPU kernels: grows to the largest size asked for and is then
// reused, so a kernel called again (every decoding step) allocates nothing.
#pragma once
#include <cstddef>
#include <vector>

namespace qkv::ops::cpu {

// At least n floats owned by the calling thread, valid until its next call.
inline float* thread_scratch(size_t n) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace qkv::ops::cpu
