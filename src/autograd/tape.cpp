#include "autograd/tape.h"

#include <algorithm>
#include <limits>
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
  // The watched Vars by the step after which their gradients are complete, latest first.
  std::vector<std::pair<size_t, size_t>> completion;  // (first use, index)
  if (watch_)
    for (size_t i = 0; i < watch_->first_use.size(); ++i)
      if (watch_->first_use[i] < steps_.size()) completion.emplace_back(watch_->first_use[i], i);
  std::sort(completion.begin(), completion.end(), std::greater<>());
  auto next = completion.begin();
  // Each step is dropped once run, releasing the activations and gradients it held: the peak
  // stays near the forward pass's instead of growing through the whole backward pass.
  for (size_t s = steps_.size(); s-- > 0;) {
    steps_[s]();
    steps_[s] = nullptr;
    for (; next != completion.end() && next->first == s; ++next) watch_->on_complete(next->second);
    if (watch_ && watch_->after_step) watch_->after_step();
  }
  if (watch_)
    for (size_t i = 0; i < watch_->first_use.size(); ++i)
      if (watch_->first_use[i] >= steps_.size()) watch_->on_complete(i);  // unused
  clear();
}

void Tape::watch(const std::vector<Var>& vars, std::function<void(size_t)> on_complete,
                 std::function<void()> after_step) {
  watch_ = std::make_unique<Watch>();
  for (size_t i = 0; i < vars.size(); ++i) watch_->index.emplace(vars[i].id(), i);
  watch_->first_use.assign(vars.size(), std::numeric_limits<size_t>::max());
  watch_->on_complete = std::move(on_complete);
  watch_->after_step = std::move(after_step);
}

void Tape::note_input(const Var& v) {
  auto it = watch_->index.find(v.id());
  if (it != watch_->index.end() && watch_->first_use[it->second] > steps_.size())
    watch_->first_use[it->second] = steps_.size();
}

}  // namespace qkv
