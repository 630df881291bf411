// Broadcasting arithmetic: shape rules here, loops in ops/cpu/elementwise.cpp.
#include <algorithm>

#include "ops/cpu/kernels.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"

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

Tensor binary(cpu::Binary op, const char* name, const Tensor& a, const Tensor& b) {
  QKV_REQUIRE(a.dtype() == DType::f32 && b.dtype() == DType::f32, name, "needs F32 tensors");
  Device dev = common_device(name, {&a, &b});
  Shape shape = broadcast_shape(a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, DType::f32, dev);
  auto sa = broadcast_strides(a.shape(), shape), sb = broadcast_strides(b.shape(), shape);
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL(name, cuda::binary(op, a.data<float>(), sa.data(), b.data<float>(), sb.data(),
                                       out.data<float>(), shape.data(), int(shape.size())));
  else
    cpu::binary(op, a.data<float>(), sa.data(), b.data<float>(), sb.data(), out.data<float>(),
                shape.data(), int(shape.size()));
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
  return binary(cpu::Binary::add, "add", a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(cpu::Binary::mul, "mul", a, b);
}

Tensor scale(const Tensor& x, float s) {
  QKV_REQUIRE(x.dtype() == DType::f32, "scale", "needs an F32 tensor");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  if (x.device() == Device::cuda)
    QKV_CUDA_KERNEL("scale", cuda::scale(x.data<float>(), s, y.data<float>(), x.numel()));
  else
    cpu::scale(x.data<float>(), s, y.data<float>(), x.numel());
  return y;
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  QKV_REQUIRE(x.numel() == y.numel(), "axpy",
              "sizes differ: " + shape_str(x.shape()) + " and " + shape_str(y.shape()));
  Device dev = common_device("axpy", {&x, &y});
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL("axpy", cuda::axpy(alpha, x.data<float>(), y.data<float>(), x.numel()));
  else
    cpu::axpy(alpha, x.data<float>(), y.data<float>(), x.numel());
}

void reduce_to(const Tensor& dy, Tensor& da) {
  if (!da.defined()) return;
  if (dy.shape() == da.shape()) return axpy(1.f, dy, da);
  require_reducible("reduce_to", dy.shape(), da.shape());
  Device dev = common_device("reduce_to", {&dy, &da});
  // da's shape, leading 1s aside, ends dy's shape (a bias, a position table): dy is rows of
  // da.numel() elements, added row after row (the order of the general loop below).
  Shape inner(std::find_if(da.shape().begin(), da.shape().end(), [](int64_t s) { return s != 1; }),
              da.shape().end());
  if (inner.size() <= dy.shape().size() &&
      std::equal(inner.rbegin(), inner.rend(), dy.shape().rbegin())) {
    int64_t n = da.numel(), rows = dy.numel() / n;
    if (dev == Device::cuda)
      QKV_CUDA_KERNEL("reduce_to",
                      cuda::reduce_rows_add(dy.data<float>(), rows, n, da.data<float>()));
    else
      cpu::reduce_rows_add(dy.data<float>(), rows, n, da.data<float>());
    return;
  }
  auto st = broadcast_strides(da.shape(), dy.shape());
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL("reduce_to", cuda::reduce_add(dy.data<float>(), dy.shape().data(), dy.rank(),
                                                  da.data<float>(), st.data()));
  else
    cpu::reduce_add(dy.data<float>(), dy.shape().data(), dy.rank(), da.data<float>(), st.data());
}

void mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db) {
  Device dev = common_device("mul_backward", {&dy, &a, &b, &da, &db});
  const Shape& shape = dy.shape();
  auto sa = broadcast_strides(a.shape(), shape), sb = broadcast_strides(b.shape(), shape);
  // d[...] += reduce(dy * other), other broadcast with strides so, d with strides sd.
  auto reduce_product = [&](const Tensor& other, const std::vector<int64_t>& so, Tensor& d,
                            const std::vector<int64_t>& sd) {
    if (dev == Device::cuda)
      QKV_CUDA_KERNEL("mul_backward",
                      cuda::reduce_mul_add(dy.data<float>(), other.data<float>(), so.data(),
                                           shape.data(), dy.rank(), d.data<float>(), sd.data()));
    else
      cpu::reduce_mul_add(dy.data<float>(), other.data<float>(), so.data(), shape.data(), dy.rank(),
                          d.data<float>(), sd.data());
  };
  if (da.defined()) reduce_product(b, sb, da, sa);
  if (db.defined()) reduce_product(a, sa, db, sb);
}

Tensor sum_all(const Tensor& x) {
  if (x.device() == Device::cpu)
    return Tensor::full({1}, float(cpu::sum(x.data<float>(), x.numel())));
  Tensor total = Tensor::empty({1}, DType::f32, x.device());
  QKV_CUDA_KERNEL("sum_all", cuda::sum(x.data<float>(), x.numel(), total.data<float>()));
  return total;
}

double sum_squares(const Tensor& x) {
  return sum_squares(std::vector<Tensor>{x});
}

double sum_squares(const std::vector<Tensor>& xs) {
  if (xs.empty()) return 0.0;
  std::vector<double> totals(xs.size());
  const Device dev = xs[0].device();
  for (const Tensor& x : xs)
    QKV_REQUIRE(x.dtype() == DType::f32 && x.device() == dev, "sum_squares",
                "needs F32 tensors on one device, got " + dtype_name(x.dtype()) + " on " +
                    device_name(x.device()) + " beside " + device_name(dev));
  if (dev == Device::cuda) {
    std::vector<const float*> ptrs;
    std::vector<int64_t> sizes;
    for (const Tensor& x : xs) ptrs.push_back(x.data<float>()), sizes.push_back(x.numel());
    QKV_CUDA_KERNEL("sum_squares", cuda::sum_squares(ptrs, sizes, totals.data()));
  } else {
    for (size_t i = 0; i < xs.size(); ++i)
      totals[i] = cpu::sum_squares(xs[i].data<float>(), xs[i].numel());
  }
  double total = 0.0;
  for (double t : totals) total += t;
  return total;
}

}  // namespace qkv::ops
