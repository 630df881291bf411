#include "support/gradcheck.h"

#include <gtest/gtest.h>

#include <cmath>

namespace qkv::test {

namespace {
double weighted_sum(const Tensor& out, const std::vector<float>& dout) {
  std::vector<float> o = out.to_vector();
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += double(o[i]) * dout[i];
  return s;
}
}  // namespace

void gradcheck(const std::string& what, const std::function<Var(const std::vector<Var>&)>& f,
               const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  Rng rng(options.seed);
  std::vector<Var> vars;
  for (const Tensor& t : inputs) vars.emplace_back(t.clone(), true);

  Tape tape;
  Var out;
  {
    Recording rec(tape);
    out = f(vars);
  }
  Tensor dout_t = Tensor::empty(out.shape());
  rng.normal(dout_t);
  std::vector<float> dout = dout_t.to_vector();
  Var loss;
  {
    Recording rec(tape);
    loss = sum(mul(out, Var(dout_t)));
  }
  tape.backward(loss);

  for (size_t v = 0; v < vars.size(); ++v) {
    Tensor& x = vars[v].mutable_value();
    int64_t n = x.numel();
    std::vector<float> analytic =
        vars[v].has_grad() ? vars[v].grad().to_vector() : std::vector<float>(n, 0.f);
    int64_t step = std::max<int64_t>(1, n / options.max_coords);
    double diff2 = 0, ref2 = 0;
    for (int64_t i = 0; i < n; i += step) {
      float* p = x.data<float>() + i;
      float keep = *p;
      *p = keep + options.eps;
      double up = weighted_sum(f(vars).value(), dout);
      *p = keep - options.eps;
      double down = weighted_sum(f(vars).value(), dout);
      *p = keep;
      double numeric = (up - down) / (2.0 * options.eps);
      diff2 += (numeric - analytic[i]) * (numeric - analytic[i]);
      ref2 += numeric * numeric;
    }
    // Each input on its own, relative to its own gradient's norm (a small input's wrong
    // gradient is not measured against a large one's); absolute where that is below 1e-6.
    double err = std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-6);
    if (std::isnan(err)) err = INFINITY;
    EXPECT_LE(err, options.tol) << what << ": input " << v << " " << shape_str(x.shape())
                                << " finite-difference gradient: ||analytic - numeric|| / "
                                   "max(||numeric||, 1e-6) = "
                                << err;
  }
}

}  // namespace qkv::test
