// RMSNorm and rotary position embeddings (the Llama family's ops) against PyTorch in float64
// (tests/python/torch_ref.py: LlamaRMSNorm and Hugging Face's apply_rotary_pos_emb written out),
// plus finite differences. Tolerances (max-norm relative error; measured at most 1.8e-7):
// RMSNorm 1e-5 for the output and both gradients; RoPE 2e-6 for the output and dx, with
// positions up to 2^17 (an angle computed in float would miss by about 1e-2 there).
#include <gtest/gtest.h>

#include <algorithm>

#include "support/gradcheck.h"
#include "support/op_compare.h"
#include "tensor/threads.h"

namespace qkv::test {
namespace {

// Runs f with `threads` OpenMP threads, then restores the previous count.
template <class F>
auto with_threads(int threads, F f) {
  int before = num_threads();
  set_num_threads(threads);
  auto result = f();
  set_num_threads(before);
  return result;
}

// Concatenated contents of the given tensors, for bit-for-bit comparisons.
std::vector<float> flatten(std::initializer_list<Tensor> tensors) {
  std::vector<float> all;
  for (const Tensor& t : tensors) {
    std::vector<float> v = t.to_vector();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

// i32 [batch, len]: row b counts up from its own random start in [0, max_start).
Tensor consecutive_positions(int64_t batch, int64_t len, int32_t max_start, Rng& rng) {
  Tensor starts = rand_ids({batch}, max_start, rng);
  std::vector<int32_t> p;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t l = 0; l < len; ++l) p.push_back(starts.data<int32_t>()[b] + int32_t(l));
  return Tensor::from_vector(p, {batch, len});
}

TEST(RmsNorm, MatchesTorch) {
  Rng rng(21);
  // rows 1 (and rank 1), d odd, d = 1; the last two run multithreaded.
  const std::vector<Shape> shapes = {{3, 7, 33}, {1, 1},    {1, 5},    {17},
                                     {4, 1},     {5, 1001}, {64, 700}, {9, 4097}};
  for (const Shape& shape : shapes)
    for (float eps : {1e-6f, 1e-5f, 0.1f}) {
      int64_t d = shape.back();
      TensorMap in{{"x", randn(shape, rng, 3.f)}, {"gamma", randn({d}, rng)}};
      if (d == 1) {
        // dx = gamma * dy * eps / (x^2 + eps)^1.5 is a difference of nearly equal floats in f32
        // (as in PyTorch's f32 kernel): only the output is compared.
        Tensor rstd, want = torch_reference("rms_norm", in, {{"eps", eps}})["out"];
        expect_close(ops::rms_norm_forward(in["x"], in["gamma"], eps, rstd), want, 1e-5,
                     "rms_norm out, d = 1");
        continue;
      }
      compare_with_torch(
          "rms_norm", in, {{"eps", eps}},
          [eps](auto& v) { return rms_norm(v["x"], v["gamma"], eps); }, 1e-5, 1e-5, rng);
    }
}

TEST(RmsNorm, SavesTheReciprocalRmsAndAccumulatesOnlyWhatIsAsked) {
  // x = [3, 4]: mean(x^2) = 12.5.
  Tensor x = Tensor::from_vector(std::vector<float>{3.f, 4.f}, {1, 2}), rstd;
  Tensor gamma = Tensor::from_vector(std::vector<float>{2.f, -1.f}, {2});
  Tensor y = ops::rms_norm_forward(x, gamma, 0.f, rstd);
  float rs = 1.f / std::sqrt(12.5f);
  EXPECT_FLOAT_EQ(rstd.item(), rs);
  EXPECT_FLOAT_EQ(y.to_vector()[0], 3.f * rs * 2.f);
  EXPECT_FLOAT_EQ(y.to_vector()[1], -4.f * rs);
  Rng rng(22);
  Tensor big = randn({40, 50}, rng), g = randn({50}, rng), dy = randn({40, 50}, rng), s;
  ops::rms_norm_forward(big, g, 1e-6f, s);
  Tensor dx = Tensor::zeros({40, 50}), dgamma = Tensor::zeros({50}), none;
  ops::rms_norm_backward(dy, big, g, s, dx, dgamma);
  // Starting from ones adds onto them; an undefined gradient is left out.
  Tensor dx_acc = Tensor::full({40, 50}, 1.f), dgamma_acc = Tensor::full({50}, 1.f);
  ops::rms_norm_backward(dy, big, g, s, dx_acc, none);
  ops::rms_norm_backward(dy, big, g, s, none, dgamma_acc);
  expect_close(dx_acc, ops::add(dx, Tensor::full({1}, 1.f)), 1e-6, "dx accumulated");
  expect_close(dgamma_acc, ops::add(dgamma, Tensor::full({1}, 1.f)), 1e-6, "dgamma accumulated");
}

TEST(RmsNorm, IsTheSameForAnyThreadCount) {
  Rng rng(23);
  Tensor x = randn({1000, 96}, rng), gamma = randn({96}, rng), dy = randn({1000, 96}, rng);
  auto run = [&] {
    Tensor rstd;
    Tensor y = ops::rms_norm_forward(x, gamma, 1e-6f, rstd);
    Tensor dx = Tensor::zeros(x.shape()), dgamma = Tensor::zeros({96});
    ops::rms_norm_backward(dy, x, gamma, rstd, dx, dgamma);
    return flatten({y, rstd, dx, dgamma});
  };
  std::vector<float> one = with_threads(1, run);
  EXPECT_EQ(one, with_threads(std::max(2, num_threads()), run));
  EXPECT_EQ(one, with_threads(3, run));
}

TEST(RmsNorm, BadInputIsAClearError) {
  Tensor x = Tensor::zeros({4, 6}), rstd;
  try {
    ops::rms_norm_forward(x, Tensor::zeros({5}), 1e-6f, rstd);
    FAIL() << "gamma [5] accepted for x [4, 6]";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("gamma"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[6]"), std::string::npos) << msg;
  }
  EXPECT_THROW(ops::rms_norm_forward(x, Tensor::zeros({6}), -1e-6f, rstd), std::invalid_argument);
  Tensor gamma = Tensor::zeros({6});
  ops::rms_norm_forward(x, gamma, 1e-6f, rstd);
  Tensor dx = Tensor::zeros({4, 6}), dgamma = Tensor::zeros({6}), bad_dgamma = Tensor::zeros({4});
  EXPECT_THROW(ops::rms_norm_backward(Tensor::zeros({4, 5}), x, gamma, rstd, dx, dgamma),
               std::invalid_argument);
  EXPECT_THROW(ops::rms_norm_backward(x, x, gamma, Tensor::zeros({3}), dx, dgamma),
               std::invalid_argument);
  EXPECT_THROW(ops::rms_norm_backward(x, x, gamma, rstd, dx, bad_dgamma), std::invalid_argument);
}

// The torch reference's attributes for `freq` (tests/python/torch_ref.py's rope).
nlohmann::json rope_attributes(const ops::RopeFrequencies& freq) {
  const char* scaling[] = {"none", "linear", "llama3"};
  return {{"theta", freq.theta},
          {"scaling", scaling[int(freq.scaling)]},
          {"factor", freq.factor},
          {"low_freq_factor", freq.low_freq_factor},
          {"high_freq_factor", freq.high_freq_factor},
          {"original", freq.original_positions}};
}

// Plain, linear and Llama 3.1's RoPE; with head dims from 6 to 128 the llama3 cases have pairs
// in each of its three bands (kept, blended, divided by the factor).
const std::vector<ops::RopeFrequencies> kRopeFrequencies = {
    {.theta = 10000.0},
    {.theta = 500000.0},
    {.theta = 10000.0, .scaling = ops::RopeScaling::linear, .factor = 4},
    {.theta = 500000.0,
     .scaling = ops::RopeScaling::llama3,
     .factor = 8,
     .low_freq_factor = 1,
     .high_freq_factor = 4,
     .original_positions = 8192},
    {.theta = 10000.0,
     .scaling = ops::RopeScaling::llama3,
     .factor = 32,
     .low_freq_factor = 2,
     .high_freq_factor = 8,
     .original_positions = 64}};

TEST(Rope, MatchesTorch) {
  Rng rng(24);
  // {B, H, L, D}: D = 2, D / 2 odd, decoding steps (L = 1), and a multithreaded case.
  const std::vector<Shape> shapes = {{2, 3, 5, 8},  {1, 1, 1, 2},    {1, 2, 7, 6},
                                     {3, 4, 1, 64}, {2, 8, 64, 128}, {4, 2, 3, 96}};
  for (const Shape& shape : shapes)
    for (const ops::RopeFrequencies& freq : kRopeFrequencies)
      for (int32_t max_start : {1, 4096, 1 << 17}) {
        Tensor positions = consecutive_positions(shape[0], shape[2], max_start, rng);
        TensorMap in{{"x", randn(shape, rng)}, {"positions", positions}};
        compare_with_torch(
            "rope", in, rope_attributes(freq),
            [freq](auto& v) { return rope(v["x"], v["positions"].value(), freq); }, 2e-6, 2e-6,
            rng);
      }
  // Positions in no order, repeated, and negative.
  Tensor positions =
      Tensor::from_vector(std::vector<int32_t>{7, 7, 0, -3, 100000, 2, 65, 5, 5, 1}, {2, 5});
  compare_with_torch(
      "rope", {{"x", randn({2, 3, 5, 16}, rng)}, {"positions", positions}},
      rope_attributes(kRopeFrequencies[3]),
      [](auto& v) { return rope(v["x"], v["positions"].value(), kRopeFrequencies[3]); }, 2e-6, 2e-6,
      rng);
}

TEST(Rope, DecodingStepsEqualTheWholeSequence) {
  // One token at a time ([B, H, 1, D], positions [B, 1]) gives the rows of the whole sequence.
  Rng rng(25);
  const int64_t len = 6;
  Tensor x = randn({3, 4, len, 32}, rng), positions = consecutive_positions(3, len, 1000, rng);
  Tensor whole = ops::rope_forward(x, positions, {500000.0});
  std::vector<Tensor> steps = ops::split(x, std::vector<int64_t>(len, 1), 2);
  std::vector<Tensor> want = ops::split(whole, std::vector<int64_t>(len, 1), 2);
  const int32_t* p = positions.data<int32_t>();  // [3, len]
  for (int64_t l = 0; l < len; ++l) {
    Tensor step_positions =
        Tensor::from_vector(std::vector<int32_t>{p[l], p[len + l], p[2 * len + l]}, {3, 1});
    EXPECT_EQ(ops::rope_forward(steps[l], step_positions, {500000.0}).to_vector(),
              want[l].to_vector())
        << "step " << l;
  }
}

TEST(Rope, BackwardAccumulatesTheInverseRotation) {
  Rng rng(26);
  Tensor x = randn({2, 3, 9, 24}, rng), positions = consecutive_positions(2, 9, 50000, rng);
  Tensor y = ops::rope_forward(x, positions, {10000.0});
  // Rotating back by minus the angles, onto ones, gives x + 1.
  Tensor dx = Tensor::full(x.shape(), 1.f);
  ops::rope_backward(y, positions, {10000.0}, dx);
  expect_close(dx, ops::add(x, Tensor::full({1}, 1.f)), 1e-6, "rope_backward(rope(x)) + 1");
  Tensor none;
  ops::rope_backward(y, positions, {10000.0}, none);  // not needed: nothing to do
}

TEST(Rope, IsTheSameForAnyThreadCount) {
  Rng rng(27);
  Tensor x = randn({4, 8, 32, 64}, rng), positions = consecutive_positions(4, 32, 9000, rng);
  auto run = [&] {
    Tensor dx = Tensor::zeros(x.shape());
    ops::rope_backward(x, positions, {10000.0}, dx);
    return flatten({ops::rope_forward(x, positions, {10000.0}), dx});
  };
  std::vector<float> one = with_threads(1, run);
  EXPECT_EQ(one, with_threads(std::max(2, num_threads()), run));
  EXPECT_EQ(one, with_threads(3, run));
}

TEST(Rope, BadInputIsAClearError) {
  Tensor positions = Tensor::zeros({2, 5}, DType::i32);
  auto message = [&](const Tensor& x, const Tensor& p,
                     const ops::RopeFrequencies& freq) -> std::string {
    try {
      ops::rope_forward(x, p, freq);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted x " << shape_str(x.shape()) << ", positions " << shape_str(p.shape())
                  << ", theta " << freq.theta;
    return "";
  };
  std::string odd = message(Tensor::zeros({2, 3, 5, 7}), positions, {10000.0});
  EXPECT_NE(odd.find("head_dim must be even"), std::string::npos) << odd;
  EXPECT_NE(odd.find("got 7"), std::string::npos) << odd;
  std::string wrong_shape =
      message(Tensor::zeros({2, 3, 5, 8}), Tensor::zeros({2, 4}, DType::i32), {10000.0});
  EXPECT_NE(wrong_shape.find("positions must be [batch, len] = [2, 5]"), std::string::npos)
      << wrong_shape;
  EXPECT_NE(wrong_shape.find("got [2, 4]"), std::string::npos) << wrong_shape;
  std::string flat = message(Tensor::zeros({2, 3, 5, 8}), Tensor::zeros({10}, DType::i32), {1e4});
  EXPECT_NE(flat.find("got [10]"), std::string::npos) << flat;
  std::string f32 = message(Tensor::zeros({2, 3, 5, 8}), Tensor::zeros({2, 5}), {10000.0});
  EXPECT_NE(f32.find("positions must be I32"), std::string::npos) << f32;
  std::string rank3 = message(Tensor::zeros({3, 5, 8}), positions, {10000.0});
  EXPECT_NE(rank3.find("[batch, heads, len, head_dim]"), std::string::npos) << rank3;
  std::string theta = message(Tensor::zeros({2, 3, 5, 8}), positions, {0.0});
  EXPECT_NE(theta.find("theta must be positive"), std::string::npos) << theta;
  ops::RopeFrequencies linear{.scaling = ops::RopeScaling::linear, .factor = 0};
  std::string factor = message(Tensor::zeros({2, 3, 5, 8}), positions, linear);
  EXPECT_NE(factor.find("factor must be positive and finite, got 0"), std::string::npos) << factor;
  ops::RopeFrequencies llama3 = kRopeFrequencies[3];
  llama3.high_freq_factor = llama3.low_freq_factor;
  std::string bands = message(Tensor::zeros({2, 3, 5, 8}), positions, llama3);
  EXPECT_NE(bands.find("high_freq_factor must be finite and above low_freq_factor"),
            std::string::npos)
      << bands;
  Tensor dx = Tensor::zeros({2, 3, 5, 6});
  EXPECT_THROW(ops::rope_backward(Tensor::zeros({2, 3, 5, 8}), positions, {1e4}, dx),
               std::invalid_argument);
}

TEST(Gradcheck, RmsNormAndRope) {
  Rng rng(28);
  gradcheck("rms_norm", [](auto& v) { return rms_norm(v[0], v[1], 1e-5f); },
            {randn({3, 5, 7}, rng), randn({7}, rng)});
  Tensor positions = Tensor::from_vector(std::vector<int32_t>{3, 4, 5, 90, 91, 92}, {2, 3});
  gradcheck("rope", [&](auto& v) { return rope(v[0], positions, {10000.0}); },
            {randn({2, 2, 3, 10}, rng)});
}

}  // namespace
}  // namespace qkv::test
