// CUDA kernels against the CPU kernels, through ops/ops.h: permute, concat and split (and
// their backward passes), naive f32 attention with causal and padding masks, and the decoding
// helpers (KV-cache write and gather, gather_rows, argmax_rows). Tolerance unless a test says
// otherwise: elementwise |cuda - cpu| <= 1e-5 * (|cpu| + 1); copies bit for bit. Gradients
// start random (backward kernels accumulate). Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include "ops/ops.h"
#include "support/cuda_compare.h"

namespace qkv::test {
namespace {

TEST(CudaLayout, PermuteAndItsBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(20);
  std::vector<std::pair<Shape, std::vector<int>>> cases = {
      {{7}, {0}},
      {{33, 65}, {1, 0}},
      {{2, 7, 3, 5}, {0, 2, 1, 3}},  // the head split
      {{2, 3, 7, 5}, {0, 2, 1, 3}},
      {{1, 1025, 1, 3}, {3, 1, 0, 2}},
      {{2, 3, 1, 4, 5, 2}, {5, 4, 3, 2, 1, 0}},
      {{3, 511}, {0, 1}}};
  for (auto& [shape, dims] : cases) {
    Tensor x = uniform(shape, rng);
    Tensor y = ops::permute(x, dims);
    EXPECT_TRUE(identical(ops::permute(on_cuda(x), dims), y)) << shape_str(shape);
    Tensor dy = uniform(y.shape(), rng), dx = uniform(shape, rng), dx_c = on_cuda(dx);
    ops::permute_backward(dy, dims, dx);
    ops::permute_backward(on_cuda(dy), dims, dx_c);
    EXPECT_TRUE(identical(dx_c, dx)) << shape_str(shape);  // one addition per element
  }
}

TEST(CudaLayout, ConcatSplitAndTheirBackwardsMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(21);
  // {shape of the whole, axis, piece sizes along it}
  std::vector<std::tuple<Shape, int, std::vector<int64_t>>> cases = {
      {{7}, 0, {3, 4}},          {{33, 65}, 1, {1, 0, 64}},
      {{2, 9, 5}, 1, {3, 3, 3}}, {{4, 3, 1025}, -1, {1024, 1}},
      {{1000, 3}, 0, {999, 1}},  {{2, 3, 4, 6}, 2, {2, 1, 1}}};
  for (auto& [shape, axis, sizes] : cases) {
    Tensor x = uniform(shape, rng);
    std::vector<Tensor> parts = ops::split(x, sizes, axis);
    std::vector<Tensor> parts_c = ops::split(on_cuda(x), sizes, axis);
    ASSERT_EQ(parts_c.size(), parts.size());
    for (size_t i = 0; i < parts.size(); ++i)
      EXPECT_TRUE(identical(parts_c[i], parts[i])) << shape_str(shape) << " piece " << i;
    std::vector<Tensor> on_device;
    for (const Tensor& p : parts) on_device.push_back(on_cuda(p));
    EXPECT_TRUE(identical(ops::concat(on_device, axis), ops::concat(parts, axis)))
        << shape_str(shape);

    // concat_backward into random gradients, one of them not wanted.
    Tensor dy = uniform(shape, rng);
    std::vector<Tensor> dxs, dxs_c;
    for (const Tensor& p : parts) {
      dxs.push_back(uniform(p.shape(), rng));
      dxs_c.push_back(on_cuda(dxs.back()));
    }
    std::vector<Tensor*> want, want_c;
    for (size_t i = 0; i < parts.size(); ++i) {
      want.push_back(i == 0 ? nullptr : &dxs[i]);
      want_c.push_back(i == 0 ? nullptr : &dxs_c[i]);
    }
    ops::concat_backward(dy, axis, sizes, want);
    ops::concat_backward(on_cuda(dy), axis, sizes, want_c);
    for (size_t i = 0; i < parts.size(); ++i)
      EXPECT_TRUE(identical(dxs_c[i], dxs[i])) << shape_str(shape) << " dx " << i;

    // split_backward from gradients of the pieces, the last one missing.
    std::vector<Tensor> dys, dys_c;
    for (size_t i = 0; i < parts.size(); ++i) {
      bool missing = i + 1 == parts.size() && parts.size() > 1;
      dys.push_back(missing ? Tensor() : uniform(parts[i].shape(), rng));
      dys_c.push_back(missing ? Tensor() : on_cuda(dys.back()));
    }
    Tensor dx = uniform(shape, rng), dx_c = on_cuda(dx);
    ops::split_backward(dys, sizes, axis, dx);
    ops::split_backward(dys_c, sizes, axis, dx_c);
    EXPECT_TRUE(identical(dx_c, dx)) << shape_str(shape);
  }
}

struct AttentionCase {
  int64_t batch, heads, q_len, k_len, head_dim;
  bool causal;
  std::vector<int32_t> key_lengths;  // empty: no padding
};

TEST(CudaAttention, NaiveForwardAndBackwardMatchCpuWithMasks) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(22);
  std::vector<AttentionCase> cases = {
      {1, 1, 1, 1, 1, false, {}},
      {2, 3, 7, 7, 16, true, {}},
      {2, 2, 5, 9, 8, true, {9, 4}},          // causal aligned at the end, and padding
      {3, 1, 33, 65, 64, false, {65, 1, 0}},  // a batch entry that sees no key: zeros
      {1, 2, 9, 4, 32, true, {}},             // more queries than keys: early rows see nothing
      {2, 4, 1, 300, 64, false, {300, 17}},   // one decoding query against a long cache
      {1, 2, 130, 257, 128, true, {200}}};
  for (const AttentionCase& c : cases) {
    Tensor q = uniform({c.batch, c.heads, c.q_len, c.head_dim}, rng, -1.f, 1.f);
    Tensor k = uniform({c.batch, c.heads, c.k_len, c.head_dim}, rng, -1.f, 1.f);
    Tensor v = uniform({c.batch, c.heads, c.k_len, c.head_dim}, rng);
    ops::AttentionMask mask{c.causal, Tensor()}, mask_c{c.causal, Tensor()};
    if (!c.key_lengths.empty()) {
      mask.key_lengths = Tensor::from_vector(c.key_lengths, {c.batch});
      mask_c.key_lengths = on_cuda(mask.key_lengths);
    }
    float scale = 1.f / std::sqrt(float(c.head_dim));
    std::string what = shape_str(q.shape()) + " x " + std::to_string(c.k_len) +
                       (c.causal ? " causal" : "") + (c.key_lengths.empty() ? "" : " padded");
    ops::AttentionSaved saved, saved_c;
    Tensor out = ops::attention_forward(q, k, v, mask, scale, &saved, ops::AttentionImpl::naive);
    Tensor q_c = on_cuda(q), k_c = on_cuda(k), v_c = on_cuda(v);
    Tensor out_c = ops::attention_forward(q_c, k_c, v_c, mask_c, scale, &saved_c);
    EXPECT_EQ(saved_c.impl, ops::AttentionImpl::naive) << what;
    EXPECT_TRUE(close_elementwise(out_c, out)) << what;
    EXPECT_TRUE(close_elementwise(saved_c.probs, saved.probs)) << what;
    // Without saved state (the scratch path) the output is the same.
    EXPECT_TRUE(
        close_elementwise(ops::attention_forward(q_c, k_c, v_c, mask_c, scale, nullptr), out))
        << what;

    Tensor dout = uniform(out.shape(), rng);
    Tensor dq = uniform(q.shape(), rng), dk = uniform(k.shape(), rng), dv = uniform(v.shape(), rng);
    Tensor dq_c = on_cuda(dq), dk_c = on_cuda(dk), dv_c = on_cuda(dv);
    ops::attention_backward(dout, q, k, v, out, mask, scale, saved, dq, dk, dv);
    ops::attention_backward(on_cuda(dout), q_c, k_c, v_c, out_c, mask_c, scale, saved_c, dq_c, dk_c,
                            dv_c);
    EXPECT_TRUE(close_elementwise(dq_c, dq)) << "dq " << what;
    EXPECT_TRUE(close_elementwise(dk_c, dk)) << "dk " << what;
    EXPECT_TRUE(close_elementwise(dv_c, dv)) << "dv " << what;
    // Only dv wanted.
    Tensor none, dv_only = on_cuda(dv), dv_cpu = dv.clone();
    ops::attention_backward(dout, q, k, v, out, mask, scale, saved, none, none, dv_cpu);
    ops::attention_backward(on_cuda(dout), q_c, k_c, v_c, out_c, mask_c, scale, saved_c, none, none,
                            dv_only);
    EXPECT_TRUE(close_elementwise(dv_only, dv_cpu)) << "dv alone " << what;
  }
}

TEST(CudaAttention, BadKeyLengthIsAClearError) {
  QKV_SKIP_WITHOUT_CUDA();
  Tensor q = on_cuda(Tensor::full({2, 1, 3, 4}, 0.5f));
  ops::AttentionMask mask{false, on_cuda(Tensor::from_vector(std::vector<int32_t>{3, 4}, {2}))};
  EXPECT_THROW(ops::attention_forward(q, q, q, mask, 1.f, nullptr), std::invalid_argument);
}

TEST(CudaDecoding, KvCacheWriteAndGatherMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(23);
  const int64_t n = 5, heads = 3, cap = 17, d = 65;
  Tensor cache = uniform({n, heads, cap, d}, rng), cache_c = on_cuda(cache);
  for (int64_t pos : {int64_t(0), int64_t(7), cap - 1}) {
    Tensor x = uniform({n, heads, 1, d}, rng);
    ops::kv_cache_write(cache, x, pos);
    ops::kv_cache_write(cache_c, on_cuda(x), pos);
    EXPECT_TRUE(identical(cache_c, cache)) << "write at " << pos;
  }
  // Into another tensor (repeats and reordering), then in place (strictly increasing index).
  for (auto& index : {std::vector<int32_t>{4, 0, 0, 2}, std::vector<int32_t>{1, 3, 4}}) {
    Tensor idx = Tensor::from_vector(index, {int64_t(index.size())});
    for (int64_t len : {int64_t(0), int64_t(9), cap}) {
      Tensor out = uniform({6, heads, cap, d}, rng), out_c = on_cuda(out);
      ops::kv_cache_gather(cache, idx, len, out);
      ops::kv_cache_gather(cache_c, on_cuda(idx), len, out_c);
      EXPECT_TRUE(identical(out_c, out)) << "len " << len;
    }
  }
  Tensor idx = Tensor::from_vector(std::vector<int32_t>{1, 2, 4}, {3});
  ops::kv_cache_gather(cache, idx, 11, cache);
  ops::kv_cache_gather(cache_c, on_cuda(idx), 11, cache_c);
  EXPECT_TRUE(identical(cache_c, cache)) << "in place";
  Tensor bad = on_cuda(Tensor::from_vector(std::vector<int32_t>{0, 5}, {2}));
  EXPECT_THROW(ops::kv_cache_gather(cache_c, bad, 3, cache_c), std::invalid_argument);
}

TEST(CudaDecoding, GatherRowsAndArgmaxMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(24);
  Tensor index = Tensor::from_vector(std::vector<int32_t>{2, 0, 2, 6, 1}, {5});
  Tensor x = uniform({7, 3, 33}, rng);
  EXPECT_TRUE(identical(ops::gather_rows(on_cuda(x), on_cuda(index)), ops::gather_rows(x, index)));
  Tensor ids = random_ids({7, 5}, rng, 0, 1000);  // other dtypes too, row by row
  EXPECT_TRUE(
      identical(ops::gather_rows(on_cuda(ids), on_cuda(index)), ops::gather_rows(ids, index)));
  Tensor halves = x.cast(DType::bf16);
  EXPECT_TRUE(identical(ops::gather_rows(on_cuda(halves), on_cuda(index)),
                        ops::gather_rows(halves, index)));
  EXPECT_THROW(
      ops::gather_rows(on_cuda(x), on_cuda(Tensor::from_vector(std::vector<int32_t>{7}, {1}))),
      std::invalid_argument);

  for (Shape shape : {Shape{1, 1}, Shape{7, 3}, Shape{33, 1025}, Shape{1000, 8003}}) {
    Tensor logits = uniform(shape, rng);
    EXPECT_TRUE(identical(ops::argmax_rows(on_cuda(logits)), ops::argmax_rows(logits)))
        << shape_str(shape);
  }
  // Ties: the first of equal maxima, as the CPU.
  Tensor ties = Tensor::from_vector(std::vector<float>{1, 3, 3, 0, 5, 5, 5, 5, 2, 2, 2, 2}, {3, 4});
  EXPECT_TRUE(identical(ops::argmax_rows(on_cuda(ties)), ops::argmax_rows(ties)));
  Tensor wide_ties = Tensor::full({2, 5000}, 1.f);
  EXPECT_TRUE(identical(ops::argmax_rows(on_cuda(wide_ties)), ops::argmax_rows(wide_ties)));
}

}  // namespace
}  // namespace qkv::test
