// Which of the low-precision kernels this CPU runs: the best it supports, capped by QKV_CPU_ISA
// (to compare the paths, or to rule out a faulty one without rebuilding).
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ops/cpu/low_precision.h"

namespace qkv::ops::cpu {

namespace {
Isa best_isa() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::avx2
                                                                         : Isa::portable;
}
}  // namespace

const char* isa_name(Isa isa) {
  return isa == Isa::avx2 ? "avx2" : "portable";
}

Isa isa_from_name(const char* value, Isa best) {
  if (!value || !*value) return best;
  for (Isa isa : {Isa::portable, Isa::avx2})
    if (std::strcmp(value, isa_name(isa)) == 0 && isa <= best) return isa;
  std::string offered = best == Isa::avx2 ? "\"portable\" or \"avx2\"" : "\"portable\"";
  throw std::runtime_error("QKV_CPU_ISA=\"" + std::string(value) + "\": this CPU runs " + offered);
}

Isa cpu_isa() {
  static const Isa isa = isa_from_name(std::getenv("QKV_CPU_ISA"), best_isa());
  return isa;
}

}  // namespace qkv::ops::cpu
