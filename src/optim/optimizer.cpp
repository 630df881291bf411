#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

namespace qkv::optim {

bool decays(const std::string& name, const Shape& shape) {
  if (shape.size() < 2) return false;
  for (const char* kept : {"position_embeddings", "embed_positions", "cls_token"})
    if (name.find(kept) != std::string::npos) return false;
  return true;
}

Adam::Adam(const nn::ParamList& params, const AdamConfig& config) : config_(config) {
  std::set<const void*> seen;
  for (const auto& [name, v] : params) {
    if (!v.requires_grad() || !seen.insert(v.value().raw()).second) continue;
    params_.emplace_back(name, v);
    m_.push_back(Tensor::zeros(v.shape(), DType::f32, v.value().device()));
    v_.push_back(Tensor::zeros(v.shape(), DType::f32, v.value().device()));
    decay_.push_back(decays(name, v.shape()));
  }
}

void Adam::step(float lr, float grad_scale) {
  ++step_;
  ops::AdamParams p{lr, config_.beta1, config_.beta2, config_.eps, config_.weight_decay, step_};
  for (size_t i = 0; i < params_.size(); ++i) {
    Var& v = params_[i].second;
    if (!v.has_grad()) continue;
    p.weight_decay = decay_[i] ? config_.weight_decay : 0.f;
    ops::adam_update(v.mutable_value(), v.grad(), m_[i], v_[i], p, grad_scale);
  }
}

NamedTensors Adam::state() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].first + ".exp_avg", m_[i]);
    out.emplace_back(params_[i].first + ".exp_avg_sq", v_[i]);
  }
  return out;
}

Metadata Adam::state_metadata() const {
  return {{"step", std::to_string(step_)}};
}

void Adam::load_state(const NamedTensors& tensors, const Metadata& metadata,
                      const std::string& source) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  for (size_t i = 0; i < params_.size(); ++i)
    for (auto [suffix, dst] : {std::pair{".exp_avg", &m_[i]}, std::pair{".exp_avg_sq", &v_[i]}}) {
      auto it = by_name.find(params_[i].first + suffix);
      if (it == by_name.end() || it->second->shape() != dst->shape())
        throw std::runtime_error(source + ": optimizer state for '" + params_[i].first +
                                 "' is missing or has the wrong shape");
      dst->copy_from(*it->second);
    }
  auto it = metadata.find("step");
  if (it == metadata.end()) throw std::runtime_error(source + ": no optimizer step count");
  step_ = std::stoll(it->second);
}

double grad_norm(const nn::ParamList& params) {
  std::vector<Tensor> grads;  // each shared (tied) parameter once
  std::set<const void*> seen;
  for (const auto& [name, v] : params)
    if (v.has_grad() && seen.insert(v.value().raw()).second) grads.push_back(v.grad());
  return std::sqrt(ops::sum_squares(grads));
}

void zero_grads(const nn::ParamList& params) {
  for (const auto& [name, v] : params)
    if (v.has_grad()) v.grad().zero();
}

Schedule schedule_from_name(const std::string& name) {
  if (name == "inverse-sqrt") return Schedule::inverse_sqrt;
  if (name == "cosine") return Schedule::cosine;
  if (name == "constant") return Schedule::constant;
  throw std::invalid_argument("unknown lr-schedule '" + name +
                              "' (expected inverse-sqrt, cosine or constant)");
}

float learning_rate(Schedule s, float peak, int64_t step, int64_t warmup, int64_t total) {
  double t = double(std::max<int64_t>(step, 1)), w = double(std::max<int64_t>(warmup, 1));
  double warm = std::min(1.0, t / w);
  switch (s) {
    case Schedule::inverse_sqrt:
      return float(peak * std::min(warm, std::sqrt(w / t)));
    case Schedule::constant:
      return float(peak * warm);
    case Schedule::cosine: {
      if (t < w || total <= warmup) return float(peak * warm);
      double progress = std::min(1.0, (t - w) / double(total - warmup));
      return float(peak * 0.5 * (1.0 + std::cos(M_PI * progress)));
    }
  }
  return peak;
}

UpdateResult clipped_update(Adam& adam, const nn::ParamList& params, double loss_sum, int64_t count,
                            float lr, float clip_norm) {
  double scale = 1.0 / double(std::max<int64_t>(count, 1));
  UpdateResult r{grad_norm(params) * scale, false};
  if (std::isfinite(loss_sum) && std::isfinite(r.grad_norm)) {
    if (clip_norm > 0 && r.grad_norm > clip_norm) scale *= clip_norm / r.grad_norm;
    adam.step(lr, float(scale));
    r.applied = true;
  }
  zero_grads(params);
  return r;
}

}  // namespace qkv::optim
