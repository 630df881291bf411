#include "autograd/tape.h"

#include <stdexcept>

namespace qkv {

namespace {
thread_local Tape* g_active = nullptr;
}

Tape::~Tape() {
  if (recording_) stop();
}

Tape* Tape::active() {
  return g_active;
}

void Tape::start() {
  if (recording_) throw std::logic_error("Tape::start: already recording");
  previous_ = g_active;
  g_active = this;
  recording_ = true;
}

void Tape::stop() {
  if (!recording_) return;
  g_active = previous_;
  recording_ = false;
}

void Tape::backward(Var& loss, float seed) {
  if (loss.value().numel() != 1)
    throw std::invalid_argument("backward() needs a loss with one element, got shape " +
                                shape_str(loss.shape()));
  if (!loss.requires_grad()) throw std::invalid_argument("backward(): the loss needs no gradient");
  Tensor& g = loss.grad();
  Tensor one = Tensor::full(g.shape(), seed);
  g.copy_from(one.to(g.device()));
  // Each step is dropped once run, releasing the activations and gradients it held: the peak
  // stays near the forward pass's instead of growing through the whole backward pass.
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
    (*it)();
    *it = nullptr;
  }
  steps_.clear();
}

}  // namespace qkv
