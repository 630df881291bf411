// Adam / AdamW over a model's parameters, the learning-rate schedules, and gradient clipping.
#pragma once
#include <string>

#include "io/safetensors.h"
#include "nn/params.h"
#include "ops/ops.h"

namespace qkv::optim {

struct AdamConfig {
  float beta1 = 0.9f, beta2 = 0.98f, eps = 1e-9f;  // Vaswani et al.
  // > 0: AdamW (decoupled), applied to the weight matrices only: not to biases and LayerNorm
  // parameters (rank < 2) nor to position embeddings and class tokens (see decays()).
  float weight_decay = 0.f;
};

// Whether AdamW's weight decay applies to the parameter `name` of this shape.
bool decays(const std::string& name, const Shape& shape);

class Adam {
 public:
  Adam(const nn::ParamList& params, const AdamConfig& config);
  // One update with learning rate lr; every gradient is multiplied by grad_scale first
  // (token normalisation and clipping). Parameters without a gradient are skipped.
  void step(float lr, float grad_scale);
  int64_t steps() const { return step_; }
  // Moments as "<param>.exp_avg" / "<param>.exp_avg_sq", and the step count in metadata.
  NamedTensors state() const;
  Metadata state_metadata() const;
  void load_state(const NamedTensors& tensors, const Metadata& metadata, const std::string& source);

 private:
  nn::ParamList params_;  // deduplicated
  std::vector<Tensor> m_, v_;
  std::vector<bool> decay_;  // per parameter: decays(name, shape)
  AdamConfig config_;
  int64_t step_ = 0;
};

// Global L2 norm of every gradient (0 for parameters without one).
double grad_norm(const nn::ParamList& params);
void zero_grads(const nn::ParamList& params);

// One update from gradients summed over `count` targets whose summed loss is loss_sum: the
// mean gradient's norm, clipped to clip_norm (0: no clipping), then adam.step(lr); gradients
// are zeroed either way. A non-finite loss or norm skips the step (applied = false).
struct UpdateResult {
  double grad_norm = 0;  // of the mean gradient, before clipping
  bool applied = false;
};
UpdateResult clipped_update(Adam& adam, const nn::ParamList& params, double loss_sum, int64_t count,
                            float lr, float clip_norm);

// Learning rate at update `step` (1-based) for a peak rate reached after `warmup` updates:
//   inverse-sqrt: peak * min(step / warmup, sqrt(warmup / step))     (Vaswani et al., rescaled)
//   cosine:       linear warm-up, then peak * 0.5 * (1 + cos(pi * t)) over [warmup, total]
enum class Schedule { inverse_sqrt, cosine, constant };
Schedule schedule_from_name(const std::string& name);
float learning_rate(Schedule s, float peak, int64_t step, int64_t warmup, int64_t total);

}  // namespace qkv::optim
