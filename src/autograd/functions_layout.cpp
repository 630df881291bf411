// Layout functions (permute, concat, split): forward op and backward step side by side.
#include "autograd/functions.h"

namespace qkv {

Var permute(const Var& x, const std::vector<int>& dims) {
  Var out(ops::permute(x.value(), dims), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out, dims]() mutable {
    if (!out.has_grad()) return;
    if (x.has_grad()) return ops::permute_backward(out.grad(), dims, x.grad());
    std::vector<int> inverse(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) inverse[dims[i]] = int(i);
    x.accumulate_grad(ops::permute(out.grad(), inverse));  // no zeros to add to
  });
  return out;
}

Var concat(const std::vector<Var>& xs, int axis) {
  std::vector<Tensor> values;
  bool track = false;
  for (const Var& x : xs) {
    values.push_back(x.value());
    track = needs_tape(x) || track;  // every input noted (Tape::watch)
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

Var slice_rows(const Var& x, int64_t begin, int64_t end) {
  Var out(x.value().slice_rows(begin, end), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out, begin, end]() mutable {
    if (!out.has_grad()) return;
    Tensor dx = x.grad().slice_rows(begin, end);  // a view: adds in place
    ops::axpy(1.f, out.grad(), dx);
  });
  return out;
}

Var gather_rows(const Var& x, const Tensor& index) {
  Var out(ops::gather_rows(x.value(), index), needs_tape(x));  // [M, ...]
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, index, out]() mutable {
    if (!out.has_grad()) return;
    int64_t n = x.value().size(0), row = n ? x.value().numel() / n : 0;
    Tensor dx = x.grad().reshape({n, row});
    ops::embedding_backward(out.grad().reshape({index.size(0), row}), index, dx);
  });
  return out;
}

Var scatter_add_rows(const Var& x, const Tensor& index, int64_t rows) {
  check_shape(x.value().rank() == 2 && index.rank() == 1 && index.size(0) == x.shape()[0],
              "scatter_add_rows needs x [M, d] and an index [M]");
  Tensor y = Tensor::zeros({rows, x.shape()[1]}, x.value().dtype(), x.value().device());
  ops::embedding_backward(x.value(), index, y);  // y[index[i]] += x[i]
  Var out(y, needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, index, out]() mutable {
    if (out.has_grad()) ops::axpy(1.f, ops::gather_rows(out.grad(), index), x.grad());
  });
  return out;
}

}  // namespace qkv
