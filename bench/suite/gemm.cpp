// The machine's sgemm rate through OpenBLAS (the BLAS qkv calls): a square 1024^3 product and
// the products of a `tiny`/`small` training step (64 x 32 target tokens), in the layouts
// Linear uses (forward x W^T, weight gradient dY^T x).
#include <cblas.h>

#include "benchmarks.h"
#include "util.h"

namespace qkv::bench {

namespace {
struct GemmShape {
  std::string name;
  int64_t m, n, k;
  bool trans_a, trans_b;
};

double gflops_of(const GemmShape& g, const TimingPlan& plan, Timing& timing) {
  Tensor a = Tensor::empty(g.trans_a ? Shape{g.k, g.m} : Shape{g.m, g.k});
  Tensor b = Tensor::empty(g.trans_b ? Shape{g.n, g.k} : Shape{g.k, g.n});
  Tensor c = Tensor::empty({g.m, g.n});
  Rng rng(1);
  rng.uniform(a, -1, 1), rng.uniform(b, -1, 1);
  timing = time_runs(
      [&] {
        cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                    g.trans_b ? CblasTrans : CblasNoTrans, int(g.m), int(g.n), int(g.k), 1.f,
                    a.data<float>(), int(a.size(1)), b.data<float>(), int(b.size(1)), 0.f,
                    c.data<float>(), int(g.n));
      },
      plan);
  return 2.0 * double(g.m) * double(g.n) * double(g.k) / timing.median() / 1e9;
}
}  // namespace

Json bench_gemm(const GemmArgs& args) {
  const std::vector<GemmShape> shapes = {
      {"square_1024", 1024, 1024, 1024, false, false},
      {"tiny_fc1_fwd [2048x256]x[1024x256]^T", 2048, 1024, 256, false, true},
      {"tiny_fc1_dW [2048x1024]^Tx[2048x256]", 1024, 256, 2048, true, false},
      {"tiny_output_fwd [2048x256]x[8000x256]^T", 2048, 8000, 256, false, true},
      {"small_fc1_fwd [2048x512]x[2048x512]^T", 2048, 2048, 512, false, true},
  };
  TimingPlan plan{2, 20, 3, args.seconds_per_shape};
  Json out = Json::array();
  double peak = 0;
  for (const auto& g : shapes) {
    Timing t;
    double rate = gflops_of(g, plan, t);
    peak = std::max(peak, rate);
    out.push_back({{"name", g.name},
                   {"m", g.m},
                   {"n", g.n},
                   {"k", g.k},
                   {"gflops", rate},
                   {"timing", t.to_json()}});
    log_line("gemm %-42s %7.1f GFLOP/s", g.name.c_str(), rate);
  }
  return {{"shapes", out}, {"peak_gflops", peak}};
}

}  // namespace qkv::bench
