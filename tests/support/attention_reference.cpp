#include "support/attention_reference.h"

#include <algorithm>
#include <cmath>

namespace qkv::test {

int64_t key_end(const AttentionCase& c, int64_t b, int64_t i) {
  int64_t end = c.key_lengths.empty() ? c.k_len : c.key_lengths[b];
  if (c.causal) end = std::min(end, i + c.k_len - c.q_len + 1);
  return std::max<int64_t>(end, 0);
}

AttentionReference attention_reference(const AttentionCase& c, int64_t d, float scale,
                                       const std::vector<float>& q, const std::vector<float>& k,
                                       const std::vector<float>& v,
                                       const std::vector<float>& dout) {
  const int64_t heads = c.batch * c.heads, lq = c.q_len, lk = c.k_len;
  AttentionReference r{std::vector<double>(heads * lq * d),
                       std::vector<double>(heads * lq, -INFINITY),
                       std::vector<double>(heads * lq * d), std::vector<double>(heads * lk * d),
                       std::vector<double>(heads * lk * d)};
#pragma omp parallel for
  for (int64_t bh = 0; bh < heads; ++bh) {
    std::vector<double> p(lk), dp(lk);
    for (int64_t i = 0; i < lq; ++i) {
      const int64_t end = key_end(c, bh / c.heads, i), row = bh * lq + i;
      if (end == 0) continue;
      const float *qi = &q[row * d], *doi = &dout[row * d];
      double max = -INFINITY, sum = 0.0, delta = 0.0;
      for (int64_t j = 0; j < end; ++j) {
        const float* kj = &k[(bh * lk + j) * d];
        double dot = 0.0;
        for (int64_t x = 0; x < d; ++x) dot += double(qi[x]) * kj[x];
        p[j] = scale * dot;
        max = std::max(max, p[j]);
      }
      for (int64_t j = 0; j < end; ++j) sum += p[j] = std::exp(p[j] - max);
      r.lse[row] = max + std::log(sum);
      for (int64_t j = 0; j < end; ++j) {
        p[j] /= sum;
        const float* vj = &v[(bh * lk + j) * d];
        double dot = 0.0;
        for (int64_t x = 0; x < d; ++x) {
          r.out[row * d + x] += p[j] * vj[x];
          dot += double(doi[x]) * vj[x];
        }
        dp[j] = dot;
        delta += p[j] * dot;
      }
      for (int64_t j = 0; j < end; ++j) {
        const double ds = p[j] * (dp[j] - delta);
        const int64_t key = (bh * lk + j) * d;
        for (int64_t x = 0; x < d; ++x) {
          r.dq[row * d + x] += scale * ds * k[key + x];
          r.dk[key + x] += scale * ds * qi[x];
          r.dv[key + x] += p[j] * doi[x];
        }
      }
    }
  }
  return r;
}

double norm_relative_error(const std::vector<float>& got, const std::vector<float>& base,
                           const std::vector<double>& want) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = double(got[i]) - (base.empty() ? 0.0 : base[i]);
    if (!std::isfinite(g)) return NAN;
    diff += (g - want[i]) * (g - want[i]);
    norm += want[i] * want[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);  // all-zero reference: absolute
}

}  // namespace qkv::test
