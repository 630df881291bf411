// Layout functions (permute, concat, split): forward op and backward step side by side.
#include "autograd/functions.h"

namespace qkv {

Var permute(const Var& x, const std::vector<int>& dims) {
  Var out(ops::permute(x.value(), dims), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out, dims]() mutable {
    if (out.has_grad()) ops::permute_backward(out.grad(), dims, x.grad());
  });
  return out;
}

Var concat(const std::vector<Var>& xs, int axis) {
  std::vector<Tensor> values;
  bool track = false;
  for (const Var& x : xs) {
    values.push_back(x.value());
    track = track || needs_tape(x);
  }
  Var out(ops::concat(values, axis), track);
  if (!track) return out;
  Tape::active()->record([xs, out, axis]() mutable {
    if (!out.has_grad()) return;
    std::vector<int64_t> sizes;
    std::vector<Tensor*> dxs;
    int a = axis < 0 ? axis + out.value().rank() : axis;
    for (const Var& x : xs) {
      sizes.push_back(x.value().size(a));
      dxs.push_back(x.requires_grad() ? &x.grad() : nullptr);
    }
    ops::concat_backward(out.grad(), axis, sizes, dxs);
  });
  return out;
}

std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int axis) {
  bool track = needs_tape(x);
  std::vector<Var> outs;
  for (Tensor& piece : ops::split(x.value(), sizes, axis)) outs.emplace_back(piece, track);
  if (!track) return outs;
  Tape::active()->record([x, outs, sizes, axis]() mutable {
    std::vector<Tensor> dys;
    bool any = false;
    for (const Var& o : outs) {
      dys.push_back(o.has_grad() ? o.grad() : Tensor());
      any = any || o.has_grad();
    }
    if (any) ops::split_backward(dys, sizes, axis, x.grad());
  });
  return outs;
}

}  // namespace qkv
