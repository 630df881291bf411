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
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return Isa::portable;
  bool vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  if (!vnni) return Isa::avx2;
  return __builtin_cpu_supports("avx512bf16") ? Isa::avx512bf16 : Isa::avx512vnni;
}
}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512bf16:
      return "avx512bf16";
    case Isa::avx512vnni:
      return "avx512vnni";
    case Isa::avx2:
      return "avx2";
    case Isa::portable:
      break;
  }
  return "portable";
}

std::vector<Isa> isas_up_to(Isa best) {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512vnni, Isa::avx512bf16})
    if (isa <= best) isas.push_back(isa);
  return isas;
}

Isa isa_from_name(const char* value, Isa best) {
  if (!value || !*value) return best;
  std::string offered;
  for (Isa isa : isas_up_to(best)) {
    if (std::strcmp(value, isa_name(isa)) == 0) return isa;
    offered += std::string(offered.empty() ? "" : ", ") + "\"" + isa_name(isa) + "\"";
  }
  throw std::runtime_error("QKV_CPU_ISA=\"" + std::string(value) + "\": this CPU runs " + offered);
}

Isa cpu_isa() {
  static const Isa isa = isa_from_name(std::getenv("QKV_CPU_ISA"), best_isa());
  return isa;
}

}  // namespace qkv::ops::cpu
