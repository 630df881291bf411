// The tape: while a Tape is recording on this thread, each differentiable function whose inputs
// require a gradient appends its backward step. backward() runs the steps in reverse order.
// Without a recording tape (inference), nothing is recorded and activations die as soon as they
// are no longer referenced.
#pragma once
#include <functional>
#include <memory>
#include <unordered_map>
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
  void clear() { steps_.clear(), watch_.reset(); }
  size_t size() const { return steps_.size(); }

  // Watches `vars` (trained parameters) through the recording that follows: the next backward()
  // calls on_complete(i) as soon as nothing more will add to the gradient of vars[i], which is
  // right after the step of its first use in the forward pass (the steps run in reverse), or at
  // the end for one the pass did not use. Lets gradients leave (an allreduce) during backward;
  // after_step(), when given, runs after every step (to keep such transfers moving).
  void watch(const std::vector<Var>& vars, std::function<void(size_t)> on_complete,
             std::function<void()> after_step = {});
  bool watching() const { return watch_ != nullptr; }
  // Notes that the step about to be recorded reads `v` (needs_tape calls it while watching).
  void note_input(const Var& v);

 private:
  struct Watch {
    std::unordered_map<const void*, size_t> index;  // Var::id() -> index in the watched list
    std::vector<size_t> first_use;                  // step index, or SIZE_MAX when unused
    std::function<void(size_t)> on_complete;
    std::function<void()> after_step;
  };
  std::vector<std::function<void()>> steps_;
  std::unique_ptr<Watch> watch_;
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

// True when a tape records and any input requires a gradient: then the function must record,
// right after this call, a step that reads only these inputs' gradients.
template <class... Vs>
bool needs_tape(const Vs&... inputs) {
  Tape* tape = Tape::active();
  if (tape == nullptr || !(inputs.requires_grad() || ...)) return false;
  if (tape->watching()) (tape->note_input(inputs), ...);
  return true;
}

}  // namespace qkv
