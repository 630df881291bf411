// Inference in a compute type (ops/compute_type.h, nn::PackedLinear, nn::set_compute_type):
// bf16 and int8 products against a float64 reference within their rounding bounds, int8
// weights saved and loaded (model_dir/quantized_weights.h), and whole models whose scores stay
// near f32's. CTest runs this file twice: as is (the best kernels of this CPU) and with
// QKV_CPU_ISA=portable (the fallback kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "autograd/tape.h"
#include "decode/score.h"
#include "eval/image_eval.h"
#include "eval/lm_eval.h"
#include "model_dir/quantized_weights.h"
#include "nn/packed_linear.h"
#include "support/random_model_dirs.h"
#include "support/torch_ref.h"
#include "tensor/threads.h"

namespace qkv::test {
namespace {

using ops::ComputeType;

struct Sizes {
  int64_t m, n, k;
};
constexpr Sizes kSizes[] = {{1, 1, 1},    {1, 17, 31},   {5, 16, 64},
                            {7, 40, 257}, {32, 33, 100}, {97, 15, 3}};

// Per element: the bound on |y - y64| for x [m, k] and w [n, k] (row-major) in `type`.
// int8: x = xq sx + ex, w = q sw + ew with |ex| <= sx / 2, |ew| <= sw / 2, so
// |xw - xq q sx sw| <= |x| sw / 2 + |w| sx / 2 + sx sw / 4 per product (the sum is exact);
// bf16 (8 significant bits): each operand within 2^-8 relative, so each product within 2^-7
// (and a bit), plus the f32 sum's k 2^-24. Both add the f32 rounding of the result.
std::vector<double> error_bound(const Tensor& x, const Tensor& w, ComputeType type) {
  int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  const float *xd = x.data<float>(), *wd = w.data<float>();
  auto row_max = [k](const float* row) {
    double most = 0;
    for (int64_t i = 0; i < k; ++i) most = std::max(most, double(std::fabs(row[i])));
    return most / 127;
  };
  std::vector<double> bound(size_t(m * n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double sx = row_max(xd + r * k), sw = row_max(wd + c * k), b = 0, abs_sum = 0;
      for (int64_t i = 0; i < k; ++i) {
        double xi = std::fabs(xd[r * k + i]), wi = std::fabs(wd[c * k + i]);
        abs_sum += xi * wi;
        b += xi * sw / 2 + wi * sx / 2 + sx * sw / 4;
      }
      if (type == ComputeType::bf16) b = (0x1p-7 * 1.01 + k * 0x1p-24) * abs_sum;
      bound[size_t(r * n + c)] = b + 1e-6 * abs_sum + 1e-6;
    }
  return bound;
}

// y64 = x w^T + bias in float64.
std::vector<double> reference(const Tensor& x, const Tensor& w, const Tensor& bias) {
  int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  std::vector<double> y(size_t(m * n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double s = bias.defined() ? bias.data<float>()[c] : 0.0;
      for (int64_t i = 0; i < k; ++i)
        s += double(x.data<float>()[r * k + i]) * w.data<float>()[c * k + i];
      y[size_t(r * n + c)] = s;
    }
  return y;
}

TEST(ComputeType, NamesAndTheirErrors) {
  for (ComputeType t : {ComputeType::f32, ComputeType::bf16, ComputeType::int8})
    EXPECT_EQ(ops::compute_type_from_name(ops::compute_type_name(t)), t);
  EXPECT_EQ(ops::compute_type_from_name("float32"), ComputeType::f32);
  EXPECT_EQ(ops::compute_type_from_name("bfloat16"), ComputeType::bf16);
  try {
    ops::compute_type_from_name("int4");
    FAIL() << "int4 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'int4'"), std::string::npos) << e.what();
  }
  std::string isa = ops::low_precision_isa();
  EXPECT_TRUE(isa == "avx512bf16" || isa == "avx512vnni" || isa == "avx2" || isa == "portable")
      << isa;
  if (const char* forced = std::getenv("QKV_CPU_ISA")) {
    EXPECT_EQ(isa, forced);
  }
}

TEST(ComputeType, ProductsWithinTheirRoundingBounds) {
  Rng rng(3);
  for (ComputeType type : {ComputeType::bf16, ComputeType::int8})
    for (const Sizes& s : kSizes)
      for (bool with_bias : {false, true}) {
        Tensor x = randn({s.m, s.k}, rng), w = randn({s.n, s.k}, rng, 0.1f);
        Tensor bias = with_bias ? randn({s.n}, rng) : Tensor();
        ops::PackedWeight packed = ops::pack_linear(w, type);
        Tensor y = ops::linear_forward(x, packed, bias);
        ASSERT_EQ(y.shape(), (Shape{s.m, s.n}));
        std::vector<double> want = reference(x, w, bias), bound = error_bound(x, w, type);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_LE(std::fabs(y.data<float>()[i] - want[i]), bound[i])
              << ops::compute_type_name(type) << " " << s.m << "x" << s.n << "x" << s.k
              << " element " << i;
        // The same products on one thread and on two (rows and panels split differently).
        int threads = num_threads();
        set_num_threads(1);
        Tensor one = ops::linear_forward(x, packed, bias);
        set_num_threads(2);
        Tensor two = ops::linear_forward(x, packed, bias);
        set_num_threads(threads);
        EXPECT_EQ(relative_error(one, y), 0.0);
        EXPECT_EQ(relative_error(two, y), 0.0);
      }
}

TEST(ComputeType, RowsOfZerosGiveTheBias) {
  Tensor x = Tensor::zeros({3, 20}), w = Tensor::zeros({5, 20});
  Tensor bias = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5}, {5});
  for (ComputeType type : {ComputeType::bf16, ComputeType::int8}) {
    Tensor y = ops::linear_forward(x, ops::pack_linear(w, type), bias);
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t c = 0; c < 5; ++c) EXPECT_EQ(y.data<float>()[r * 5 + c], float(c + 1));
  }
}

TEST(ComputeType, RequantizingDequantizedWeightsGivesTheSameIntegers) {
  Rng rng(4);
  Tensor w = randn({37, 61}, rng), q, scale, q2, scale2;
  ops::quantize_rows_int8(w, q, scale);
  for (int64_t i = 0; i < w.numel(); ++i) {
    float s = scale.data<float>()[i / 61];
    ASSERT_LE(std::fabs(q.data<int8_t>()[i] * s - w.data<float>()[i]), s / 2 * (1 + 1e-6));
  }
  ops::quantize_rows_int8(ops::dequantize_rows_int8(q, scale), q2, scale2);
  for (int64_t i = 0; i < q.numel(); ++i) ASSERT_EQ(q.data<int8_t>()[i], q2.data<int8_t>()[i]);
  EXPECT_LE(relative_error(scale2, scale), 1e-6);
}

TEST(ComputeType, BadArgumentsAreNamed) {
  ops::PackedWeight p = ops::pack_linear(Tensor::zeros({4, 8}), ComputeType::int8);
  EXPECT_THROW(ops::linear_forward(Tensor::zeros({2, 9}), p, Tensor()), std::invalid_argument);
  EXPECT_THROW(ops::linear_forward(Tensor::zeros({2, 8}), p, Tensor::zeros({5})),
               std::invalid_argument);
  EXPECT_THROW(ops::pack_linear(Tensor::zeros({4}), ComputeType::int8), std::invalid_argument);
  // More inputs than int32 sums of int8 products can hold.
  EXPECT_THROW(ops::pack_linear(Tensor::zeros({1, (1 << 17) + 1}), ComputeType::int8),
               std::invalid_argument);
  Tensor q, scale;
  EXPECT_THROW(ops::quantize_rows_int8(Tensor::zeros({2, 2}, DType::i32), q, scale),
               std::invalid_argument);
}

// Two layers side by side, one with a LoRA update, as a decoder's q, k, v are packed.
TEST(ComputeType, PackedLayersWithLoraStayNearF32) {
  Rng rng(5);
  nn::Linear a(48, 32), b(48, 16, false);
  a.init(rng), b.init(rng);
  auto lora = std::make_shared<nn::LoraWeights>();
  lora->a = Var(randn({4, 48}, rng, 0.1f)), lora->b = Var(randn({16, 4}, rng, 0.1f));
  lora->scaling = 2.f;
  b.lora = lora;
  Tensor x = randn({9, 48}, rng);
  Tensor want = nn::PackedLinear({&a, &b})(Var(x)).value();
  // A few per cent for int8 (random weights are its worst case: no outliers to waste range).
  for (auto [type, tol] : {std::pair{ComputeType::bf16, 0.01}, std::pair{ComputeType::int8, 0.03}})
    EXPECT_LE(relative_error(nn::PackedLinear({&a, &b}, type)(Var(x)).value(), want), tol)
        << ops::compute_type_name(type);
}

// A Linear runs its packed weight only outside training: under a tape it stays f32 and
// differentiable.
TEST(ComputeType, LinearUsesItsPackedWeightOnlyWithoutATape) {
  Rng rng(6);
  nn::Linear layer(24, 8);
  layer.init(rng);
  Tensor x = randn({3, 24}, rng);
  Tensor f32 = layer(Var(x)).value();
  nn::set_compute_type({{"layer", &layer}}, ComputeType::int8);
  ASSERT_TRUE(layer.packed);
  Tensor int8 = layer(Var(x)).value();
  EXPECT_EQ(relative_error(int8, nn::PackedLinear({&layer}, ComputeType::int8)(Var(x)).value()),
            0.0);
  EXPECT_GT(relative_error(int8, f32), 0.0);
  {
    Tape tape;
    tape.start();
    Var in(x, true);
    Var y = layer(in);
    EXPECT_EQ(relative_error(y.value(), f32), 0.0);
    Var loss = sum(y);
    tape.backward(loss);
    EXPECT_TRUE(in.has_grad());
  }
  nn::set_compute_type({{"layer", &layer}}, ComputeType::f32);
  EXPECT_FALSE(layer.packed);
  EXPECT_EQ(relative_error(layer(Var(x)).value(), f32), 0.0);
}

double total(const std::vector<double>& v) {
  double s = 0;
  for (double d : v) s += d;
  return s;
}

// Whole random models scored in each compute type, against f32.
TEST(ComputeType, ModelsScoreNearF32) {
  std::string dir = temp_path("compute_type_models");
  std::filesystem::remove_all(dir);
  write_random_translation_dir(dir + "/translation", 7);
  write_random_gpt_dir(dir + "/gpt", 8);
  write_random_vit_dir(dir + "/vit", 9);
  std::vector<std::string> src, tgt, lines;  // pairs short enough for 64 positions
  for (size_t i = 0; src.size() < 12 && i < bible_dev().src.size(); ++i) {
    const std::string &s = bible_dev().src[i], &t = bible_dev().tgt[i];
    if (s.empty() || t.empty() || s.size() > 80 || t.size() > 80) continue;
    src.push_back(s), tgt.push_back(t);
    lines.push_back(t.substr(0, t.rfind(' ', 25)));  // the language model's 32 characters
  }
  ASSERT_EQ(src.size(), 12u);
  Rng rng(10);
  std::vector<Tensor> images;
  for (int i = 0; i < 4; ++i) {
    Tensor pixels = Tensor::empty({3, 8, 8}, DType::u8);
    for (int64_t j = 0; j < pixels.numel(); ++j)
      pixels.data<uint8_t>()[j] = uint8_t(rng.below(256));
    images.push_back(pixels);
  }

  model_dir::TranslationModel t = model_dir::load_translation_dir(dir + "/translation");
  model_dir::LanguageModel lm = model_dir::load_language_model_dir(dir + "/gpt");
  auto vit = model_dir::load_vit_dir(dir + "/vit");
  struct Scores {
    std::vector<double> translation, lm, probabilities;
  };
  auto run = [&](ComputeType type) {
    nn::set_compute_type(t.model->linears(), type);
    nn::set_compute_type(lm.model->linears(), type);
    nn::set_compute_type(vit->linears(), type);
    Scores s;
    for (const auto& p : decode::score_pairs(*t.model, *t.tokenizer, src, tgt, 512))
      s.translation.push_back(p.log_prob);
    for (const auto& l : eval::score_lines(*lm.model, *lm.tokenizer, lines, 4))
      s.lm.push_back(l.log_prob);
    for (const auto& top : eval::classify_images(*vit, images, 3))
      for (const auto& c : top) s.probabilities.push_back(c.probability);
    return s;
  };
  Scores f32 = run(ComputeType::f32);
  for (auto [type, tol] :
       {std::pair{ComputeType::bf16, 0.005}, std::pair{ComputeType::int8, 0.02}}) {
    Scores got = run(type);
    std::string name = ops::compute_type_name(type);
    EXPECT_NEAR(total(got.translation), total(f32.translation),
                tol * std::fabs(total(f32.translation)))
        << name;
    EXPECT_NEAR(total(got.lm), total(f32.lm), tol * std::fabs(total(f32.lm))) << name;
    EXPECT_NE(got.translation, f32.translation) << name << " changed nothing";
    for (size_t i = 0; i < got.probabilities.size(); ++i)
      EXPECT_NEAR(got.probabilities[i], f32.probabilities[i], 2 * tol) << name;
  }
}

TEST(QuantizedWeights, SavedAsInt8AndLoadedAsF32) {
  Rng rng(11);
  Tensor w = randn({6, 10}, rng), norm = randn({10}, rng), conv = randn({2, 3, 2, 2}, rng);
  NamedTensors tensors = {{"layer.weight", w},
                          {"norm.weight", norm},
                          {"patch.weight", conv},
                          {"layer.bias", randn({6}, rng)},
                          {"ids", Tensor::zeros({2, 2}, DType::i32)},
                          {"norm.weight_scale", randn({10}, rng)}};  // a scale of no int8 tensor
  NamedTensors quantized = model_dir::quantize_weights(tensors);
  ASSERT_EQ(quantized.size(), tensors.size() + 1);
  std::string path = temp_path("quantized.safetensors");
  save_safetensors(path, quantized);
  EXPECT_TRUE(model_dir::holds_int8(path));
  NamedTensors loaded = model_dir::load_weights(path);
  ASSERT_EQ(loaded.size(), tensors.size());
  Tensor q, scale;
  ops::quantize_rows_int8(w, q, scale);
  for (size_t i = 0; i < loaded.size(); ++i) {
    EXPECT_EQ(loaded[i].first, tensors[i].first);
    const Tensor& want = i == 0 ? ops::dequantize_rows_int8(q, scale) : tensors[i].second;
    EXPECT_EQ(loaded[i].second.dtype(), want.dtype());
    if (want.dtype() == DType::f32) {
      EXPECT_EQ(relative_error(loaded[i].second, want), 0.0);
    }
  }
  EXPECT_LE(relative_error(loaded[0].second, w), 0.01);

  std::string plain = temp_path("plain.safetensors");
  save_safetensors(plain, tensors);
  EXPECT_FALSE(model_dir::holds_int8(plain));
  EXPECT_EQ(model_dir::compute_type_for("", plain, Device::cpu), ComputeType::f32);
  EXPECT_EQ(model_dir::compute_type_for("", path, Device::cpu), ComputeType::int8);
  EXPECT_EQ(model_dir::compute_type_for("", path, Device::cuda), ComputeType::f32);
  EXPECT_EQ(model_dir::compute_type_for("bf16", path, Device::cpu), ComputeType::bf16);
  EXPECT_THROW(model_dir::compute_type_for("int8", plain, Device::cuda), std::invalid_argument);
  EXPECT_THROW(model_dir::compute_type_for("fp8", plain, Device::cpu), std::invalid_argument);
}

TEST(QuantizedWeights, AnInt8TensorWithoutItsScaleIsNamed) {
  Tensor q = Tensor::zeros({2, 3}, DType::i8);
  for (const NamedTensors& bad :
       {NamedTensors{{"a.weight", q}},
        NamedTensors{{"a.weight", q}, {"a.weight_scale", Tensor::zeros({3})}}}) {
    std::string path = temp_path("bad_int8.safetensors");
    save_safetensors(path, bad);
    try {
      model_dir::load_weights(path);
      FAIL() << "loaded";
    } catch (const std::runtime_error& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find("'a.weight'"), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace qkv::test
