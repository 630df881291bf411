#include "model_dir/quantized_weights.h"

#include <map>
#include <stdexcept>

#include "model_dir/model_dir.h"
#include "nn/packed_linear.h"
#include "ops/compute_type.h"

namespace qkv::model_dir {

NamedTensors load_weights(const std::string& path) {
  NamedTensors tensors = load_safetensors(path);
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  NamedTensors out;
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::i8) {
      std::string base = name.substr(0, name.size() - std::string(kScaleSuffix).size());
      bool is_scale = name.ends_with(kScaleSuffix) && by_name.count(base) &&
                      by_name[base]->dtype() == DType::i8;
      if (!is_scale) out.emplace_back(name, t);
      continue;
    }
    auto scale = by_name.find(name + kScaleSuffix);
    if (scale == by_name.end())
      throw std::runtime_error(path + ": int8 tensor '" + name + "' has no '" + name +
                               kScaleSuffix + "'");
    const Tensor& s = *scale->second;
    if (t.rank() != 2 || s.dtype() != DType::f32 || s.shape() != Shape{t.size(0)})
      throw std::runtime_error(path + ": int8 tensor '" + name + "' " + shape_str(t.shape()) +
                               " needs a matrix with an F32 scale per row, got " +
                               dtype_name(s.dtype()) + " " + shape_str(s.shape()));
    out.emplace_back(name, ops::dequantize_rows_int8(t, s));
  }
  return out;
}

bool holds_int8(const std::string& path) {
  for (const SafetensorsEntry& e : read_safetensors_header(path).entries)
    if (e.dtype == DType::i8) return true;
  return false;
}

ops::ComputeType compute_type_for(const std::string& name, const std::string& weights_path,
                                  Device device) {
  if (name.empty() || name == "default")
    return device == Device::cpu && holds_int8(weights_path) ? ops::ComputeType::int8
                                                             : ops::ComputeType::f32;
  ops::ComputeType type = ops::compute_type_from_name(name);
  if (type != ops::ComputeType::f32 && device != Device::cpu)
    throw std::invalid_argument("compute type " + name + " runs on the cpu only (cuda: f32)");
  return type;
}

ops::ComputeType apply_compute_type(const std::string& name, const std::string& dir,
                                    const std::string& checkpoint, Device device,
                                    const nn::LinearList& linears) {
  ops::ComputeType type = compute_type_for(name, weights_path(dir, checkpoint), device);
  nn::set_compute_type(linears, type);
  return type;
}

NamedTensors quantize_weights(const NamedTensors& tensors) {
  NamedTensors out;
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::f32 || t.rank() != 2 || !name.ends_with(".weight")) {
      out.emplace_back(name, t);
      continue;
    }
    Tensor q, scale;
    ops::quantize_rows_int8(t, q, scale);
    out.emplace_back(name, q);
    out.emplace_back(name + kScaleSuffix, scale);
  }
  return out;
}

}  // namespace qkv::model_dir
