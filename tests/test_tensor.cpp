// Tensor views and copies, bfloat16 rounding, the caching allocator and the Philox RNG.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tensor/allocator.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"
#include "tensor/threads.h"

namespace qkv {
namespace {

Tensor iota(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(i);
  return t;
}

TEST(Tensor, ReshapeInfersOneAxisAndSharesStorage) {
  Tensor t = iota({2, 3, 4});
  EXPECT_EQ(t.reshape({-1, 4}).shape(), (Shape{6, 4}));
  EXPECT_EQ(t.reshape({2, -1}).shape(), (Shape{2, 12}));
  EXPECT_EQ(t.reshape({4, -1, 2}).shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.reshape({-1}).shape(), (Shape{24}));
  EXPECT_TRUE(t.reshape({-1}).shares_storage(t));
  EXPECT_EQ(t.reshape({24}).to_vector(), t.to_vector());
  EXPECT_EQ(Tensor::zeros({1}).reshape({}).shape(), Shape{});
  EXPECT_EQ(Tensor::zeros({}).reshape({-1}).shape(), (Shape{1}));
  EXPECT_EQ(Tensor::zeros({0, 5}).reshape({-1, 5}).shape(), (Shape{0, 5}));
  EXPECT_EQ(Tensor::zeros({0, 5}).reshape({5, 0, 3}).shape(), (Shape{5, 0, 3}));
}

TEST(Tensor, BadReshapeThrows) {
  Tensor t = iota({2, 3, 4});
  EXPECT_THROW(t.reshape({5, 5}), std::invalid_argument);
  EXPECT_THROW(t.reshape({-1, 5}), std::invalid_argument);  // 24 is not a multiple of 5
  EXPECT_THROW(t.reshape({-1, -1}), std::invalid_argument);
  EXPECT_THROW(t.reshape({-2, -12}), std::invalid_argument);
  EXPECT_THROW(t.reshape({}), std::invalid_argument);
  // With a zero among the other sizes the -1 could be anything.
  EXPECT_THROW(Tensor::zeros({0, 5}).reshape({-1, 0}), std::invalid_argument);
}

TEST(Tensor, SliceRowsIsAViewOfWholeRows) {
  Tensor t = iota({4, 3});  // rows 0..3, values 3*row + col
  Tensor rows = t.slice_rows(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 3}));
  EXPECT_TRUE(rows.shares_storage(t));
  EXPECT_EQ(rows.to_vector(), (std::vector<float>{3, 4, 5, 6, 7, 8}));
  rows.data<float>()[0] = -1;
  EXPECT_EQ(t.data<float>()[3], -1) << "writes through the view reach the tensor";
  EXPECT_EQ(rows.slice_rows(1, 2).to_vector(), (std::vector<float>{6, 7, 8}));
  EXPECT_EQ(t.slice_rows(2, 2).shape(), (Shape{0, 3}));
  EXPECT_EQ(iota({5}).slice_rows(3, 5).to_vector(), (std::vector<float>{3, 4}));
  Tensor batch = iota({3, 2, 2});
  EXPECT_EQ(batch.slice_rows(2, 3).to_vector(), (std::vector<float>{8, 9, 10, 11}));

  EXPECT_THROW(t.slice_rows(3, 5), std::invalid_argument);
  EXPECT_THROW(t.slice_rows(-1, 2), std::invalid_argument);
  EXPECT_THROW(t.slice_rows(2, 1), std::invalid_argument);
  EXPECT_THROW(Tensor::zeros({}).slice_rows(0, 1), std::invalid_argument);
}

TEST(Tensor, CloneCopiesOnlyTheView) {
  Tensor t = iota({4, 3});
  Tensor c = t.clone();
  EXPECT_FALSE(c.shares_storage(t));
  EXPECT_EQ(c.shape(), t.shape());
  EXPECT_EQ(c.to_vector(), t.to_vector());
  c.data<float>()[0] = 100;
  EXPECT_EQ(t.data<float>()[0], 0) << "the clone is independent";
  Tensor rows = t.slice_rows(2, 4).clone();
  EXPECT_EQ(rows.to_vector(), (std::vector<float>{6, 7, 8, 9, 10, 11}));
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{4, -5}, {2}).clone();
  EXPECT_EQ(ids.dtype(), DType::i32);
  EXPECT_EQ(ids.data<int32_t>()[1], -5);
}

// Expected bit patterns computed once with PyTorch 1.13 (Debian python3-torch):
// torch.from_numpy(np.array(bits, np.uint32).view(np.float32)).to(torch.bfloat16).
// Torch writes every NaN as 0xffff; qkv keeps the sign and sets the quiet bit, so for NaN
// inputs the test asks only for a NaN.
struct Bf16Case {
  uint32_t f32_bits;
  uint16_t torch_bits;
};
constexpr Bf16Case kBf16Cases[] = {
    {0x3f800000, 0x3f80},  // 1.0
    {0x3f808000, 0x3f80},  // 1 + 2^-8: a tie, rounds to the even 0x3f80
    {0x3f818000, 0x3f82},  // a tie above the odd 0x3f81, rounds up to even
    {0x3f807fff, 0x3f80},  // just below the tie
    {0x3f808001, 0x3f81},  // just above the tie
    {0x3f7fffff, 0x3f80},  // the float below 1.0 rounds up across the exponent
    {0x7f7fffff, 0x7f80},  // FLT_MAX overflows to inf
    {0x7f7f7fff, 0x7f7f},  // a large value that stays finite
    {0xff7fffff, 0xff80},  // -FLT_MAX to -inf
    {0x7f800000, 0x7f80},  // inf
    {0xff800000, 0xff80},  // -inf
    {0x00000001, 0x0000},  // the smallest subnormal
    {0x00008000, 0x0000},  // a subnormal tie, rounds to even 0
    {0x00018000, 0x0002},  // a subnormal tie, rounds up to even
    {0x807fffff, 0x8080},  // the largest negative subnormal rounds to -FLT_MIN
    {0x00800000, 0x0080},  // FLT_MIN
    {0x80000000, 0x8000},  // -0.0
    {0x00000000, 0x0000},  // 0.0
    {0x40490fdb, 0x4049},  // pi
    {0xc0490fdb, 0xc049},  // -pi
    {0x3dcccccd, 0x3dcd},  // 0.1
    {0x477fe000, 0x4780},  // 65504 (F16 max)
};
constexpr uint32_t kNanBits[] = {0x7fc00000, 0x7f800001, 0xffc00000, 0x7fffffff};

float float_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

TEST(Bf16, RoundsToNearestEvenLikeTorch) {
  for (const auto& c : kBf16Cases) {
    float f = float_from_bits(c.f32_bits);
    EXPECT_EQ(to_bf16(f).bits, c.torch_bits) << std::hex << "f32 bits 0x" << c.f32_bits;
  }
  for (uint32_t bits : kNanBits) {
    float back = from_bf16(to_bf16(float_from_bits(bits)));
    EXPECT_TRUE(std::isnan(back)) << std::hex << "NaN 0x" << bits << " became " << back;
  }
}

TEST(F16, RoundsToNearestEvenAndWidensExactly) {
  // Every finite half widens exactly and rounds back to itself.
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    f16 x{uint16_t(h)};
    float f = from_f16(x);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(from_f16(to_f16(f))));
      continue;
    }
    ASSERT_EQ(to_f16(f).bits, h) << std::hex << "half 0x" << h;
  }
  struct Case {
    float value;
    uint16_t bits;
  } cases[] = {{1.f, 0x3c00},
               {-2.f, 0xc000},
               {65504.f, 0x7bff},
               {65520.f, 0x7c00},  // the tie above the max overflows
               {1e6f, 0x7c00},
               {5.9604645e-8f, 0x0001},  // the smallest subnormal
               {2.9802322e-8f, 0x0000},  // half of it: a tie, rounds to even 0
               {1.0009765625f, 0x3c01},
               {1.00048828125f, 0x3c00},  // ulp, and its tie -> even
               {1.00146484375f, 0x3c02},
               {0.1f, 0x2e66}};
  for (const auto& c : cases) EXPECT_EQ(to_f16(c.value).bits, c.bits) << c.value;
  Tensor t = Tensor::from_vector(std::vector<float>{0.1f, -3.5f, 1e-6f}, {3}).cast(DType::f16);
  std::vector<float> back = t.cast(DType::f32).to_vector();
  EXPECT_EQ(back[1], -3.5f);
  EXPECT_NEAR(back[0], 0.1f, 1e-4f);
  EXPECT_NEAR(back[2], 1e-6f, 6e-8f);
}

TEST(Bf16, CastOfATensorRoundsAndWidensExactly) {
  std::vector<float> values;
  for (const auto& c : kBf16Cases) values.push_back(float_from_bits(c.f32_bits));
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}).cast(DType::bf16);
  ASSERT_EQ(t.dtype(), DType::bf16);
  std::vector<float> back = t.cast(DType::f32).to_vector();
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(t.data<bf16>()[i].bits, kBf16Cases[i].torch_bits) << i;
    EXPECT_EQ(to_bf16(back[i]).bits, kBf16Cases[i].torch_bits) << "widening is exact: " << i;
  }
}

TEST(CachingAllocator, ReusesBlocksOnARepeatedAllocationPattern) {
  auto pattern = [] {
    std::vector<Tensor> live;
    for (int64_t n : {1, 17, 1000, 4097, 65536, 300001}) live.push_back(Tensor::empty({n}));
    live.push_back(Tensor::empty({0}));
    live.push_back(Tensor::empty({3, 5}, DType::bf16));
  };
  CachingAllocator& cpu = allocator_for(Device::cpu);
  pattern();
  AllocatorStats first = cpu.stats();
  pattern();
  AllocatorStats second = cpu.stats();
  EXPECT_EQ(second.system_allocations, first.system_allocations);
  EXPECT_EQ(second.bytes_in_use, first.bytes_in_use);
  EXPECT_EQ(second.bytes_cached, first.bytes_cached);

  size_t before = cpu.stats().bytes_in_use;
  {
    Tensor t = Tensor::empty({1000});
    EXPECT_EQ(cpu.stats().bytes_in_use, before + CachingAllocator::round_size(4000));
  }
  EXPECT_EQ(cpu.stats().bytes_in_use, before);
}

TEST(CachingAllocator, SizeClassesCoverTheRequest) {
  for (size_t bytes : {size_t(0), size_t(1), size_t(64), size_t(65), size_t(4096), size_t(4097),
                       size_t(1) << 20, (size_t(1) << 20) + 1, size_t(123456789)}) {
    size_t rounded = CachingAllocator::round_size(bytes);
    EXPECT_GE(rounded, bytes);
    EXPECT_EQ(rounded % 64, 0u) << bytes;
    EXPECT_LE(rounded - bytes, std::max<size_t>(64, bytes / 8)) << "waste: " << bytes;
  }
}

std::vector<float> uniform_draw(Rng& rng, int64_t n) {
  Tensor t = Tensor::empty({n});
  rng.uniform(t);
  return t.to_vector();
}

TEST(Rng, SameSeedAndOffsetGiveTheSameNumbers) {
  Rng a(42), b(42);
  EXPECT_EQ(uniform_draw(a, 1000), uniform_draw(b, 1000));
  EXPECT_EQ(a.offset(), b.offset());
  // Resuming from (seed, offset) continues the same sequence.
  Rng resumed(42, a.offset());
  EXPECT_EQ(uniform_draw(a, 77), uniform_draw(resumed, 77));
}

TEST(Rng, DifferentSeedsAndOffsetsDiffer) {
  Rng first(42, 0), later(42, 1000), other_seed(43, 0);
  std::vector<float> x = uniform_draw(first, 1000);
  EXPECT_NE(x, uniform_draw(later, 1000));
  EXPECT_NE(x, uniform_draw(other_seed, 1000));
  EXPECT_NE(x, uniform_draw(first, 1000)) << "consecutive draws differ";
  Rng seed_high(uint64_t(42) | (uint64_t(1) << 40));
  EXPECT_NE(x, uniform_draw(seed_high, 1000)) << "the seed's upper 32 bits count";
}

TEST(Rng, ThreadCountDoesNotChangeTheNumbers) {
  int threads = num_threads();
  Tensor one = Tensor::empty({200000}), two = Tensor::empty({200000});
  set_num_threads(1);
  Rng(7).normal(one);
  set_num_threads(2);
  Rng(7).normal(two);
  set_num_threads(threads);
  EXPECT_EQ(one.to_vector(), two.to_vector());
}

struct Moments {
  double mean, stddev, min, max;
};

Moments moments(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  double sum = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
  for (float x : v) {
    sum += x;
    sq += double(x) * x;
    lo = std::min(lo, double(x));
    hi = std::max(hi, double(x));
  }
  double mean = sum / double(v.size());
  return {mean, std::sqrt(sq / double(v.size()) - mean * mean), lo, hi};
}

TEST(Rng, NormalHasTheRequestedMeanAndStddev) {
  // Over 1e5 samples the standard error of the mean is stddev / 316; the bounds are ~5 of them.
  Rng rng(123);
  Tensor t = Tensor::empty({100000});
  rng.normal(t);
  Moments m = moments(t);
  EXPECT_NEAR(m.mean, 0.0, 0.016);
  EXPECT_NEAR(m.stddev, 1.0, 0.012);
  EXPECT_TRUE(std::isfinite(m.min) && std::isfinite(m.max));
  rng.normal(t, 2.f, 0.5f);
  m = moments(t);
  EXPECT_NEAR(m.mean, 2.0, 0.008);
  EXPECT_NEAR(m.stddev, 0.5, 0.006);
}

TEST(Rng, UniformStaysInRange) {
  Rng rng(5);
  Tensor t = Tensor::empty({100000});
  rng.uniform(t, -3.f, 5.f);
  Moments m = moments(t);
  EXPECT_GE(m.min, -3.0);
  EXPECT_LT(m.max, 5.0);
  EXPECT_NEAR(m.mean, 1.0, 0.05);                      // 8 / sqrt(12) / 316 ~ 0.007 per sigma
  EXPECT_NEAR(m.stddev, 8.0 / std::sqrt(12.0), 0.03);  // of a uniform on [-3, 5)
  rng.uniform(t);
  m = moments(t);
  EXPECT_GE(m.min, 0.0);
  EXPECT_LT(m.max, 1.0);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(rng.below(7), 7u);
}

TEST(Device, NamesAreCheckedAndCudaOnlyWhereAGpuIs) {
  EXPECT_EQ(usable_device("cpu"), Device::cpu);
  try {
    usable_device("gpu");
    FAIL() << "an unknown device was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'gpu'"), std::string::npos) << e.what();
  }
  if (cuda_device_count() > 0)
    EXPECT_EQ(usable_device("cuda"), Device::cuda);
  else
    EXPECT_THROW(usable_device("cuda"), std::invalid_argument);
}

}  // namespace
}  // namespace qkv
