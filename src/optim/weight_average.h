// An exponential moving average of a model's weights (Polyak averaging; Marian's exponential
// smoothing, TensorFlow's ExponentialMovingAverage with num_updates). After update t (1-based):
//   average <- d_t * average + (1 - d_t) * weights,   d_t = min(decay, (1 + t) / (10 + t)),
// from the weights the run started with. Early on d_t forgets quickly (the average spans about
// the last t / 9 updates), later it spans about 1 / (1 - decay) updates. The average of the
// weights an optimizer wanders through translates and classifies better than the last of them,
// most of all while the learning rate is high; training goes on from the last weights.
#pragma once
#include <string>

#include "io/safetensors.h"
#include "nn/params.h"

namespace qkv::optim {

// d_t above.
double average_decay(double decay, int64_t step);

class WeightAverage {
 public:
  // Starts at the parameters' values; decay in (0, 1).
  WeightAverage(const nn::ParamList& params, double decay);
  // Moves the average towards the parameters' values after update `step` (1-based).
  void update(int64_t step);
  // Under the names nn::param_tensors gives the parameters (each tied weight once).
  const NamedTensors& weights() const { return average_; }
  // Replaces the average with a saved one (a checkpoint's), as nn::load_params loads a model:
  // every tensor there with its shape and no other, or an error naming `source` and the tensor.
  void load(const NamedTensors& tensors, const std::string& source);

  // While alive, the parameters hold the average; their own values come back when it ends.
  class Swap {
   public:
    explicit Swap(const WeightAverage* average);  // nullptr: leaves the parameters alone
    ~Swap();
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    const WeightAverage* average_;
    std::vector<Tensor> trained_;
  };

 private:
  nn::ParamList params_;  // each tied weight once, in weights()'s order
  NamedTensors average_;
  double decay_;
};

}  // namespace qkv::optim
