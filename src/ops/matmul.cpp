// Matrix products and the linear layer: shape checks, then the GEMM kernel of the tensors'
// device and dtype.
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"
#include "ops/precision.h"

namespace qkv::ops {

namespace {
struct GemmDims {
  int64_t batch, m, n, k;
};

GemmDims gemm_dims(const char* op, const Tensor& a, bool ta, const Tensor& b, bool tb,
                   const Shape& c_shape_or_empty) {
  QKV_REQUIRE(a.rank() >= 2 && b.rank() >= 2, op,
              "needs matrices, got " + shape_str(a.shape()) + " and " + shape_str(b.shape()));
  int64_t m = ta ? a.size(-1) : a.size(-2), ka = ta ? a.size(-2) : a.size(-1);
  int64_t kb = tb ? b.size(-1) : b.size(-2), n = tb ? b.size(-2) : b.size(-1);
  QKV_REQUIRE(ka == kb, op,
              "inner sizes differ: " + shape_str(a.shape()) + (ta ? "^T" : "") + " @ " +
                  shape_str(b.shape()) + (tb ? "^T" : ""));
  Shape lead_a(a.shape().begin(), a.shape().end() - 2),
      lead_b(b.shape().begin(), b.shape().end() - 2);
  QKV_REQUIRE(lead_a == lead_b, op,
              "batch shapes differ: " + shape_str(a.shape()) + " and " + shape_str(b.shape()));
  if (!c_shape_or_empty.empty()) {
    Shape want = lead_a;
    want.push_back(m);
    want.push_back(n);
    QKV_REQUIRE(c_shape_or_empty == want, op,
                "output is " + shape_str(c_shape_or_empty) + ", expected " + shape_str(want));
  }
  return {shape_numel(lead_a), m, n, ka};
}

// Whether the packed f32 kernel may run a linear layer's products: the device has it (the cpu),
// outside a bf16 AutocastScope (inside one the products go to gemm, which multiplies in bf16).
bool packed_kernel_runs(DType dtype, Device dev) {
  return has_kernel<kernels::linear_packed>(dev, dtype) &&
         matmul_precision() == MatmulPrecision::f32;
}

// Whether the packed kernel runs a linear layer's products on w [out, in] whatever the rows:
// it may, and the weight is small (a ViT's). It takes the rows in chunks that stay in the L1
// cache and writes each output once, where OpenBLAS also packs the rows, zeroes the output or
// adds to the bias written before, and splits such small products between its threads poorly.
bool packs_any_rows(const Tensor& w, DType dtype, Device dev) {
  return w.numel() <= kPackedWeightMax && packed_kernel_runs(dtype, dev);
}

// y [rows, out] = x [rows, in] @ packed + bias, or y += x @ packed (accumulate; bias undefined).
void run_linear_packed(const Tensor& x, const Tensor& packed, const Tensor& bias, bool accumulate,
                       Tensor& y) {
  DType dtype = common_dtype("linear_packed", {&x, &packed, &bias, &y});
  Device dev = common_device("linear_packed", {&x, &packed, &bias, &y});
  dispatch<kernels::linear_packed>(dev, dtype, [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), packed.data<T>(), bias.defined() ? bias.data<T>() : nullptr,
           x.numel() / x.size(-1), y.size(-1), x.size(-1), accumulate, y.data<T>());
  });
}

// dx [rows, in] = dy [rows, out] @ w [out, in], or dx += the product (accumulate): the packed
// kernel on w's transpose where it runs for any rows, else the BLAS.
void input_grad(const Tensor& dy2, const Tensor& w, Tensor& dx2, bool accumulate) {
  if (packs_any_rows(w, dy2.dtype(), common_device("linear_input_grad", {&dy2, &w, &dx2})))
    run_linear_packed(dy2, pack_linear_weight(permute(w, {1, 0})), Tensor(), accumulate, dx2);
  else
    gemm(dy2, false, w, false, dx2, 1.f, accumulate ? 1.f : 0.f);
}
}  // namespace

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
          float beta) {
  QKV_REQUIRE(a.rank() == 2 && b.rank() == 2, "gemm", "needs 2-D tensors");
  batched_gemm(a, trans_a, b, trans_b, c, alpha, beta);
}

void batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  float alpha, float beta) {
  GemmDims d = gemm_dims("batched_gemm", a, trans_a, b, trans_b, c.shape());
  DType dtype = common_dtype("batched_gemm", {&a, &b, &c});
  Device dev = common_device("batched_gemm", {&a, &b, &c});
  dispatch<kernels::batched_gemm>(dev, dtype, [&]<typename T>(auto* kernel) {
    kernel(trans_a, trans_b, d.batch, d.m, d.n, d.k, alpha, a.data<T>(), d.m * d.k, b.data<T>(),
           d.k * d.n, beta, c.data<T>(), d.m * d.n);
  });
}

Tensor matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b) {
  GemmDims d = gemm_dims("matmul", a, trans_a, b, trans_b, {});
  Shape shape(a.shape().begin(), a.shape().end() - 2);
  shape.push_back(d.m);
  shape.push_back(d.n);
  Tensor c = Tensor::empty(shape, a.dtype(), a.device());
  batched_gemm(a, trans_a, b, trans_b, c);
  return c;
}

Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias) {
  QKV_REQUIRE(w.rank() == 2 && x.rank() >= 1 && x.size(-1) == w.size(1), "linear",
              "input " + shape_str(x.shape()) + " does not fit weight " + shape_str(w.shape()));
  QKV_REQUIRE(!bias.defined() || bias.shape() == Shape{w.size(0)}, "linear",
              "bias " + shape_str(bias.shape()) + " does not fit weight " + shape_str(w.shape()));
  // Few rows (an encoder of one short sentence) on any weight too: OpenBLAS would repack the
  // weight for little work, and its threads made such products up to 10x slower on a loaded
  // machine.
  Device dev = common_device("linear", {&x, &w, &bias});
  bool few_rows = x.numel() <= kPackedRowsMax * x.size(-1) && packed_kernel_runs(x.dtype(), dev);
  if (few_rows || packs_any_rows(w, x.dtype(), dev))
    return linear_packed_forward(x, pack_linear_weight(w), w.size(0), bias);
  Shape shape = x.shape();
  shape.back() = w.size(0);
  Tensor y = Tensor::empty(shape, x.dtype(), x.device());
  Tensor x2 = x.reshape({-1, w.size(1)}), y2 = y.reshape({-1, w.size(0)});
  float beta = 0.f;
  if (bias.defined()) {
    // y = bias in every row, then y += x w^T.
    DType dtype = common_dtype("linear", {&x, &w, &bias});
    dispatch<kernels::fill_rows>(dev, dtype, [&]<typename T>(auto* kernel) {
      kernel(y2.data<T>(), bias.data<T>(), y2.size(0), y2.size(1));
    });
    beta = 1.f;
  }
  gemm(x2, false, w, true, y2, 1.f, beta);
  return y;
}

Tensor pack_linear_weight(const Tensor& w) {
  QKV_REQUIRE(w.rank() == 2, "pack_linear_weight",
              "needs a weight [out, in], got " + shape_str(w.shape()));
  int64_t panels = (w.size(0) + kLinearPanel - 1) / kLinearPanel;
  Tensor packed = Tensor::empty({panels, w.size(1), kLinearPanel}, w.dtype(), w.device());
  dispatch<kernels::pack_linear_weight>(w.device(), w.dtype(), [&]<typename T>(auto* kernel) {
    kernel(w.data<T>(), w.size(0), w.size(1), packed.data<T>());
  });
  return packed;
}

Tensor linear_packed_forward(const Tensor& x, const Tensor& packed, int64_t out,
                             const Tensor& bias) {
  const char* op = "linear_packed";
  QKV_REQUIRE(packed.rank() == 3 && packed.size(2) == kLinearPanel &&
                  packed.size(0) == (out + kLinearPanel - 1) / kLinearPanel && x.rank() >= 1 &&
                  x.size(-1) == packed.size(1),
              op,
              "input " + shape_str(x.shape()) + " does not fit packed weight " +
                  shape_str(packed.shape()) + " of " + std::to_string(out) + " outputs");
  QKV_REQUIRE(
      !bias.defined() || bias.shape() == Shape{out}, op,
      "bias " + shape_str(bias.shape()) + " does not fit " + std::to_string(out) + " outputs");
  DType dtype = common_dtype(op, {&x, &packed, &bias});
  Device dev = common_device(op, {&x, &packed, &bias});
  Shape shape = x.shape();
  shape.back() = out;
  Tensor y = Tensor::empty(shape, dtype, dev);
  run_linear_packed(x, packed, bias, false, y);
  return y;
}

void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                     Tensor& dbias) {
  Tensor dy2 = dy.reshape({-1, w.size(0)}), x2 = x.reshape({-1, w.size(1)});
  if (dx.defined()) {
    Tensor dx2 = dx.reshape({-1, w.size(1)});
    input_grad(dy2, w, dx2, true);  // [rows, in] += dy [rows, out] @ w [out, in]
  }
  if (dw.defined()) gemm(dy2, true, x2, false, dw, 1.f, 1.f);  // [out, in] += dy^T @ x
  if (dbias.defined()) reduce_to(dy2, dbias);
}

Tensor linear_input_grad(const Tensor& dy, const Tensor& w) {
  QKV_REQUIRE(w.rank() == 2 && dy.rank() >= 1 && dy.size(-1) == w.size(0), "linear_input_grad",
              "gradient " + shape_str(dy.shape()) + " does not fit weight " + shape_str(w.shape()));
  Shape shape = dy.shape();
  shape.back() = w.size(1);
  Tensor dx = Tensor::empty(shape, dy.dtype(), dy.device());
  Tensor dx2 = dx.reshape({-1, w.size(1)});
  input_grad(dy.reshape({-1, w.size(0)}), w, dx2, false);
  return dx;
}

}  // namespace qkv::ops
