// Broadcasting arithmetic: shape rules here, loops in the kernels (ops/cpu/elementwise.cpp,
// ops/cuda/elementwise.cu).
#include <algorithm>

#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {
// Element strides of `s` viewed in a shape of rank `rank` (aligned right), with 0 on axes where
// it is broadcast (size 1 or missing).
std::vector<int64_t> broadcast_strides(const Shape& s, const Shape& out) {
  int rank = int(out.size()), off = rank - int(s.size());
  std::vector<int64_t> st(rank, 0);
  int64_t stride = 1;
  for (int d = int(s.size()) - 1; d >= 0; --d) {
    st[d + off] = (s[d] == 1 && out[d + off] != 1) ? 0 : stride;
    stride *= s[d];
  }
  return st;
}

Tensor binary(Binary op, const char* name, const Tensor& a, const Tensor& b) {
  DType dtype = common_dtype(name, {&a, &b});
  Device dev = common_device(name, {&a, &b});
  Shape shape = broadcast_shape(a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, dtype, dev);
  auto sa = broadcast_strides(a.shape(), shape), sb = broadcast_strides(b.shape(), shape);
  dispatch<kernels::binary>(dev, dtype, [&]<typename T>(auto* kernel) {
    kernel(op, a.data<T>(), sa.data(), b.data<T>(), sb.data(), out.data<T>(), shape.data(),
           int(shape.size()));
  });
  return out;
}

void require_reducible(const char* name, const Shape& from, const Shape& to) {
  QKV_REQUIRE(from.size() >= to.size() && broadcast_shape(from, to) == from, name,
              "cannot reduce " + shape_str(from) + " to " + shape_str(to));
}
}  // namespace

Shape broadcast_shape(const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    QKV_REQUIRE(da == db || da == 1 || db == 1, "broadcast",
                "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary(Binary::add, "add", a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(Binary::mul, "mul", a, b);
}

Tensor scale(const Tensor& x, float s) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch<kernels::scale>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), s, y.data<T>(), x.numel());
  });
  return y;
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  QKV_REQUIRE(x.numel() == y.numel(), "axpy",
              "sizes differ: " + shape_str(x.shape()) + " and " + shape_str(y.shape()));
  DType dtype = common_dtype("axpy", {&x, &y});
  Device dev = common_device("axpy", {&x, &y});
  dispatch<kernels::axpy>(dev, dtype, [&]<typename T>(auto* kernel) {
    kernel(alpha, x.data<T>(), y.data<T>(), x.numel());
  });
}

void reduce_to(const Tensor& dy, Tensor& da) {
  if (!da.defined()) return;
  if (dy.shape() == da.shape()) return axpy(1.f, dy, da);
  require_reducible("reduce_to", dy.shape(), da.shape());
  DType dtype = common_dtype("reduce_to", {&dy, &da});
  Device dev = common_device("reduce_to", {&dy, &da});
  // da's shape, leading 1s aside, ends dy's shape (a bias, a position table): dy is rows of
  // da.numel() elements, added row after row (the order of the general loop below).
  Shape inner(std::find_if(da.shape().begin(), da.shape().end(), [](int64_t s) { return s != 1; }),
              da.shape().end());
  if (inner.size() <= dy.shape().size() &&
      std::equal(inner.rbegin(), inner.rend(), dy.shape().rbegin())) {
    int64_t n = da.numel(), rows = dy.numel() / n;
    dispatch<kernels::reduce_rows_add>(
        dev, dtype, [&]<typename T>(auto* kernel) { kernel(dy.data<T>(), rows, n, da.data<T>()); });
    return;
  }
  auto st = broadcast_strides(da.shape(), dy.shape());
  dispatch<kernels::reduce_add>(dev, dtype, [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), dy.shape().data(), dy.rank(), da.data<T>(), st.data());
  });
}

void mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db) {
  const char* op = "mul_backward";
  DType dtype = common_dtype(op, {&dy, &a, &b, &da, &db});
  Device dev = common_device(op, {&dy, &a, &b, &da, &db});
  const Shape& shape = dy.shape();
  auto sa = broadcast_strides(a.shape(), shape), sb = broadcast_strides(b.shape(), shape);
  // d[...] += reduce(dy * other), other broadcast with strides so, d with strides sd.
  auto reduce_product = [&](const Tensor& other, const std::vector<int64_t>& so, Tensor& d,
                            const std::vector<int64_t>& sd) {
    dispatch<kernels::reduce_mul_add>(dev, dtype, [&]<typename T>(auto* kernel) {
      kernel(dy.data<T>(), other.data<T>(), so.data(), shape.data(), dy.rank(), d.data<T>(),
             sd.data());
    });
  };
  if (da.defined()) reduce_product(b, sb, da, sa);
  if (db.defined()) reduce_product(a, sa, db, sb);
}

Tensor sum_all(const Tensor& x) {
  Tensor total = Tensor::empty({1}, DType::f32, x.device());
  dispatch<kernels::sum>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), x.numel(), total.data<float>());
  });
  return total;
}

double sum_squares(const Tensor& x) {
  return sum_squares(std::vector<Tensor>{x});
}

double sum_squares(const std::vector<Tensor>& xs) {
  if (xs.empty()) return 0.0;
  std::vector<double> totals(xs.size());
  const Device dev = xs[0].device();
  const DType dtype = xs[0].dtype();
  for (const Tensor& x : xs)
    QKV_REQUIRE(x.dtype() == dtype && x.device() == dev, "sum_squares",
                "needs tensors of one dtype on one device, got " + dtype_name(x.dtype()) + " on " +
                    device_name(x.device()) + " beside " + dtype_name(dtype) + " on " +
                    device_name(dev));
  dispatch<kernels::sum_squares>(dev, dtype, [&]<typename T>(auto* kernel) {
    std::vector<const T*> data;
    std::vector<int64_t> sizes;
    for (const Tensor& x : xs) data.push_back(x.data<T>()), sizes.push_back(x.numel());
    kernel(data, sizes, totals.data());
  });
  double total = 0.0;
  for (double t : totals) total += t;
  return total;
}

}  // namespace qkv::ops
