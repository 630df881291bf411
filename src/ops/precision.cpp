#include "ops/precision.h"

#include <stdexcept>

#include "ops/cpu/low_precision.h"

namespace qkv::ops {

namespace {
thread_local MatmulPrecision current = MatmulPrecision::f32;
}  // namespace

MatmulPrecision precision_from_name(const std::string& name) {
  if (name == "f32") return MatmulPrecision::f32;
  if (name == "bf16") return MatmulPrecision::bf16;
  throw std::invalid_argument("precision must be f32 or bf16, got '" + name + "'");
}

const char* precision_name(MatmulPrecision p) {
  return p == MatmulPrecision::bf16 ? "bf16" : "f32";
}

MatmulPrecision matmul_precision() {
  return current;
}

bool cpu_has_bf16_products() {
  return cpu::cpu_isa() >= cpu::Isa::avx512bf16;
}

AutocastScope::AutocastScope(MatmulPrecision p) : previous_(current) {
  current = p;
}

AutocastScope::~AutocastScope() {
  current = previous_;
}

}  // namespace qkv::ops
