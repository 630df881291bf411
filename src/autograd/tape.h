// The tape: while a Tape is recording on this thread, each differentiable function whose inputs
// require a gradient appends its backward step. backward() runs the steps in reverse order.
// Without a recording tape (inference), nothing is recorded and activations die as soon as they
// are no longer referenced.
#pragma once
#include <functional>
#include <vector>

#include "autograd/var.h"

namespace qkv {

class Tape {
 public:
  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;
  ~Tape();

  // The tape recording on this thread, or nullptr.
  static Tape* active();
  // Makes this tape the recording one until stop() (or destruction); tapes nest.
  void start();
  void stop();

  void record(std::function<void()> backward_step) { steps_.push_back(std::move(backward_step)); }
  // Seeds d(loss)/d(loss) = seed (loss must hold one element) and runs every step in reverse.
  // The tape is cleared afterwards.
  void backward(Var& loss, float seed = 1.f);
  void clear() { steps_.clear(); }
  size_t size() const { return steps_.size(); }

 private:
  std::vector<std::function<void()>> steps_;
  Tape* previous_ = nullptr;
  bool recording_ = false;
};

// Records on `tape` for the lifetime of the guard.
class Recording {
 public:
  explicit Recording(Tape& tape) : tape_(tape) { tape_.start(); }
  ~Recording() { tape_.stop(); }

 private:
  Tape& tape_;
};

// True when a tape records and any input requires a gradient: then the function must record.
template <class... Vs>
bool needs_tape(const Vs&... inputs) {
  return Tape::active() != nullptr && (inputs.requires_grad() || ...);
}

}  // namespace qkv
