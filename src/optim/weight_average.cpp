#include "optim/weight_average.h"

#include <algorithm>
#include <set>
#include <stdexcept>

#include "ops/ops.h"

namespace qkv::optim {

double average_decay(double decay, int64_t step) {
  return std::min(decay, double(1 + step) / double(10 + step));
}

WeightAverage::WeightAverage(const nn::ParamList& params, double decay) : decay_(decay) {
  if (!(decay > 0 && decay < 1))
    throw std::invalid_argument("the weight average's decay must be in (0, 1), not " +
                                std::to_string(decay));
  std::set<const void*> seen;
  for (const auto& [name, v] : params)
    if (seen.insert(v.value().raw()).second) {
      params_.emplace_back(name, v);
      average_.emplace_back(name, v.value().clone());
    }
}

void WeightAverage::update(int64_t step) {
  float keep = float(average_decay(decay_, step));
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& avg = average_[i].second;
    ops::axpy(keep - 1.f, avg, avg);                        // keep * avg
    ops::axpy(1.f - keep, params_[i].second.value(), avg);  // + (1 - keep) * w
  }
}

void WeightAverage::load(const NamedTensors& tensors, const std::string& source) {
  nn::ParamList slots;  // handles on the average's own tensors, filled in place
  for (const auto& [name, avg] : average_) slots.emplace_back(name, Var(avg));
  nn::load_params(slots, tensors, source);
}

WeightAverage::Swap::Swap(const WeightAverage* average) : average_(average) {
  if (!average_) return;
  for (size_t i = 0; i < average_->params_.size(); ++i) {
    Var v = average_->params_[i].second;
    trained_.push_back(v.value().clone());
    v.mutable_value().copy_from(average_->average_[i].second);
  }
}

WeightAverage::Swap::~Swap() {
  if (!average_) return;
  for (size_t i = 0; i < trained_.size(); ++i) {
    Var v = average_->params_[i].second;
    v.mutable_value().copy_from(trained_[i]);
  }
}

}  // namespace qkv::optim
