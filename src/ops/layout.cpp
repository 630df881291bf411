// Layout ops: permute, concat, split. Shape rules here, copies in the kernels
// (ops/cpu/layout.cpp, ops/cuda/layout.cu).
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {
void check_permutation(const char* op, const Shape& shape, const std::vector<int>& dims) {
  int rank = int(shape.size());
  std::string what = "dims of rank " + std::to_string(dims.size()) + " for shape " +
                     shape_str(shape) + ", expected a permutation of 0.." +
                     std::to_string(rank - 1) + " (rank <= 6)";
  QKV_REQUIRE(int(dims.size()) == rank && rank <= 6, op, what);
  std::vector<bool> seen(rank, false);
  for (int d : dims) {
    QKV_REQUIRE(d >= 0 && d < rank && !seen[d], op, what);
    seen[d] = true;
  }
}

Shape permuted(const Shape& shape, const std::vector<int>& dims) {
  Shape out(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) out[i] = shape[dims[i]];
  return out;
}

int normalize_axis(const char* op, int axis, int rank) {
  QKV_REQUIRE(axis >= -rank && axis < rank, op,
              "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

// Elements before `axis` (the rows of the concatenation) and after it (per unit of the axis).
int64_t numel_before(const Shape& s, int axis) {
  return shape_numel(Shape(s.begin(), s.begin() + axis));
}
int64_t numel_after(const Shape& s, int axis) {
  return shape_numel(Shape(s.begin() + axis + 1, s.end()));
}

// sizes (one per slot) must be non-negative and add up to whole's size along axis.
void check_pieces(const char* op, const std::vector<int64_t>& sizes, size_t slots,
                  const Tensor& whole, int axis) {
  QKV_REQUIRE(sizes.size() == slots && !sizes.empty(), op,
              std::to_string(sizes.size()) + " sizes for " + std::to_string(slots) + " pieces");
  int64_t total = 0;
  for (int64_t s : sizes) {
    QKV_REQUIRE(s >= 0, op, "negative piece size " + std::to_string(s));
    total += s;
  }
  QKV_REQUIRE(total == whole.size(axis), op,
              "pieces add up to " + std::to_string(total) + ", but axis " + std::to_string(axis) +
                  " of " + shape_str(whole.shape()) + " has " + std::to_string(whole.size(axis)));
}

// The joined shape, after checking that every part matches `ref` off the axis.
Shape joined_shape(const char* op, const std::vector<const Tensor*>& parts, int axis,
                   const Shape& ref) {
  Shape out = ref;
  out[axis] = 0;
  for (const Tensor* t : parts) {
    Shape s = t->shape();
    bool fits = s.size() == ref.size() && t->dtype() == parts[0]->dtype();
    if (fits) s[axis] = ref[axis];
    QKV_REQUIRE(fits && s == ref, op,
                "part " + dtype_name(t->dtype()) + " " + shape_str(t->shape()) + " does not fit " +
                    shape_str(ref) + " off axis " + std::to_string(axis) + " (parts of one dtype)");
    out[axis] += t->size(axis);
  }
  return out;
}
}  // namespace

Tensor permute(const Tensor& x, const std::vector<int>& dims) {
  check_permutation("permute", x.shape(), dims);
  Tensor y = Tensor::empty(permuted(x.shape(), dims), x.dtype(), x.device());
  dispatch<kernels::permute>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), x.shape().data(), x.rank(), dims.data(), y.data<T>(), false);
  });
  return y;
}

void permute_backward(const Tensor& dy, const std::vector<int>& dims, Tensor& dx) {
  const char* op = "permute_backward";
  if (!dx.defined()) return;
  check_permutation(op, dx.shape(), dims);
  QKV_REQUIRE(dy.shape() == permuted(dx.shape(), dims), op,
              "gradient " + shape_str(dy.shape()) + " does not fit input " + shape_str(dx.shape()));
  std::vector<int> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[dims[i]] = int(i);
  DType dtype = common_dtype(op, {&dy, &dx});
  Device dev = common_device(op, {&dy, &dx});
  dispatch<kernels::permute>(dev, dtype, [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), dy.shape().data(), dy.rank(), inverse.data(), dx.data<T>(), true);
  });
}

Tensor concat(const std::vector<Tensor>& xs, int axis) {
  QKV_REQUIRE(!xs.empty(), "concat", "needs at least one tensor");
  axis = normalize_axis("concat", axis, xs[0].rank());
  std::vector<const Tensor*> parts;
  std::vector<int64_t> widths;
  for (const Tensor& t : xs) parts.push_back(&t);
  Shape shape = joined_shape("concat", parts, axis, xs[0].shape());
  Device dev = xs[0].device();
  for (const Tensor& t : xs) QKV_REQUIRE(t.device() == dev, "concat", "parts on different devices");
  Tensor y = Tensor::empty(shape, xs[0].dtype(), dev);
  for (const Tensor& t : xs) widths.push_back(t.size(axis) * numel_after(shape, axis));
  int64_t outer = numel_before(shape, axis);
  dispatch<kernels::join_rows>(dev, y.dtype(), [&]<typename T>(auto* kernel) {
    std::vector<const T*> data;
    for (const Tensor& t : xs) data.push_back(t.data<T>());
    kernel(data.data(), widths.data(), int(xs.size()), outer, y.data<T>(), false);
  });
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int axis) {
  axis = normalize_axis("split", axis, x.rank());
  check_pieces("split", sizes, sizes.size(), x, axis);
  std::vector<Tensor> ys;
  std::vector<int64_t> widths;
  int64_t after = numel_after(x.shape(), axis);
  for (int64_t s : sizes) {
    Shape shape = x.shape();
    shape[axis] = s;
    ys.push_back(Tensor::empty(shape, x.dtype(), x.device()));
    widths.push_back(s * after);
  }
  int64_t outer = numel_before(x.shape(), axis);
  dispatch<kernels::split_rows>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    std::vector<T*> data;
    for (Tensor& y : ys) data.push_back(y.data<T>());
    kernel(x.data<T>(), widths.data(), int(sizes.size()), outer, data.data(), false);
  });
  return ys;
}

void concat_backward(const Tensor& dy, int axis, const std::vector<int64_t>& sizes,
                     std::vector<Tensor*> dxs) {
  const char* op = "concat_backward";
  axis = normalize_axis(op, axis, dy.rank());
  std::vector<int64_t> widths;
  int64_t after = numel_after(dy.shape(), axis);
  check_pieces(op, sizes, dxs.size(), dy, axis);
  for (size_t i = 0; i < sizes.size(); ++i) {
    Tensor* dx = dxs[i];
    if (dx && dx->defined()) {
      Shape want = dy.shape();
      want[axis] = sizes[i];
      QKV_REQUIRE(dx->shape() == want && dx->dtype() == dy.dtype(), op,
                  "gradient " + dtype_name(dx->dtype()) + " " + shape_str(dx->shape()) +
                      ", expected " + dtype_name(dy.dtype()) + " " + shape_str(want));
      common_device(op, {&dy, dx});
    }
    widths.push_back(sizes[i] * after);
  }
  int64_t outer = numel_before(dy.shape(), axis);
  dispatch<kernels::split_rows>(dy.device(), dy.dtype(), [&]<typename T>(auto* kernel) {
    std::vector<T*> data;
    for (Tensor* dx : dxs) data.push_back(dx ? data_or_null<T>(*dx) : nullptr);
    kernel(dy.data<T>(), widths.data(), int(sizes.size()), outer, data.data(), true);
  });
}

void split_backward(const std::vector<Tensor>& dys, const std::vector<int64_t>& sizes, int axis,
                    Tensor& dx) {
  const char* op = "split_backward";
  if (!dx.defined()) return;
  axis = normalize_axis(op, axis, dx.rank());
  check_pieces(op, sizes, dys.size(), dx, axis);
  std::vector<int64_t> widths;
  int64_t after = numel_after(dx.shape(), axis);
  for (size_t i = 0; i < sizes.size(); ++i) {
    const Tensor& dy = dys[i];
    if (dy.defined()) {
      Shape want = dx.shape();
      want[axis] = sizes[i];
      QKV_REQUIRE(dy.shape() == want && dy.dtype() == dx.dtype(), op,
                  "gradient " + dtype_name(dy.dtype()) + " " + shape_str(dy.shape()) +
                      ", expected " + dtype_name(dx.dtype()) + " " + shape_str(want));
      common_device(op, {&dy, &dx});
    }
    widths.push_back(sizes[i] * after);
  }
  int64_t outer = numel_before(dx.shape(), axis);
  dispatch<kernels::join_rows>(dx.device(), dx.dtype(), [&]<typename T>(auto* kernel) {
    std::vector<const T*> data;
    for (const Tensor& dy : dys) data.push_back(dy.defined() ? dy.data<T>() : nullptr);
    kernel(data.data(), widths.data(), int(sizes.size()), outer, dx.data<T>(), true);
  });
}

}  // namespace qkv::ops
