#include <iostream>

#include "commands.h"
#include "model_dir/quantized_weights.h"

namespace qkv::cli {

void add_compute_type_option(CLI::App* cmd, std::string& compute_type) {
  cmd->add_option("--compute-type", compute_type,
                  "the linear layers' products: f32, bf16 or int8 (cpu only; default: int8 for a "
                  "directory written by qkv quantize, else f32)")
      ->check(CLI::IsMember({"f32", "float32", "bf16", "bfloat16", "int8"}));
}

ops::ComputeType apply_compute_type(const std::string& name, const std::string& model_dir,
                                    const std::string& checkpoint, Device device,
                                    const nn::LinearList& linears) {
  ops::ComputeType type =
      model_dir::apply_compute_type(name, model_dir, checkpoint, device, linears);
  bool portable = std::string(ops::low_precision_isa()) == "portable";
  if (type != ops::ComputeType::f32 && portable)
    std::cerr << "qkv: warning: compute type " << ops::compute_type_name(type)
              << " runs its portable kernels here (no AVX2, or QKV_CPU_ISA=portable): "
                 "correct, but slower than f32\n";
  else if (type == ops::ComputeType::bf16)
    std::cerr << "qkv: warning: compute type bf16 widens its operands to f32 in registers (qkv "
                 "has no AVX512_BF16 kernels): bf16 results, at about f32's speed\n";
  return type;
}

}  // namespace qkv::cli
