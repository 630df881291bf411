#include "nn/params.h"

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

namespace qkv::nn {

void init_xavier_uniform(Tensor& w, Rng& rng) {
  float bound = std::sqrt(6.f / float(w.size(0) + w.size(1)));
  rng.uniform(w, -bound, bound);
}

void init_normal(Tensor& w, Rng& rng, float stddev) {
  rng.normal(w, 0.f, stddev);
}

Var make_param(const Shape& shape) {
  return Var(Tensor::zeros(shape), true);
}

NamedTensors param_tensors(const ParamList& params) {
  NamedTensors out;
  std::set<const void*> seen;  // a tied weight is listed once, under its first name
  for (const auto& [name, v] : params)
    if (seen.insert(v.value().raw()).second) out.emplace_back(name, v.value());
  return out;
}

void load_params(const ParamList& params, const NamedTensors& tensors, const std::string& source,
                 bool allow_unused) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  std::set<std::string> used;
  std::set<const void*> loaded;
  for (const auto& [name, v] : params) {
    if (loaded.count(v.value().raw())) continue;  // tied: already loaded under another name
    auto it = by_name.find(name);
    if (it == by_name.end()) throw std::runtime_error(source + ": missing tensor '" + name + "'");
    const Tensor& t = *it->second;
    if (t.shape() != v.shape() || t.dtype() != v.value().dtype())
      throw std::runtime_error(source + ": tensor '" + name + "' is " + dtype_name(t.dtype()) +
                               " " + shape_str(t.shape()) + ", the model expects " +
                               dtype_name(v.value().dtype()) + " " + shape_str(v.shape()));
    Var(v).mutable_value().copy_from(t);
    used.insert(name);
    loaded.insert(v.value().raw());
  }
  if (!allow_unused)
    for (const auto& [name, t] : tensors)
      if (!used.count(name))
        throw std::runtime_error(source + ": tensor '" + name + "' belongs to no parameter");
}

void move_params(const ParamList& params, Device device) {
  for (const auto& [name, v] : params) {
    Var(v).mutable_value() = v.value().to(device);
    v.clear_grad();
  }
}

int64_t count_params(const ParamList& params) {
  int64_t n = 0;
  for (const auto& [name, t] : param_tensors(params)) n += t.numel();
  return n;
}

}  // namespace qkv::nn
