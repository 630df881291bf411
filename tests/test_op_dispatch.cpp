// The op dispatch (src/ops/kernel_registry.h): an op runs the kernel registered for its tensors'
// device and dtype, a pair without one fails with one line naming the op, the device and the
// dtype, and a new dtype for an op is one kernel plus one registration.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "ops/kernel_registry.h"
#include "ops/kernels.h"
#include "ops/ops.h"

namespace qkv {
namespace {

// What `call` throws, or "" when it throws nothing.
template <class F>
std::string error_of(F call) {
  try {
    call();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(OpDispatch, AMissingKernelIsOneLineNamingOpDeviceAndDtype) {
  Tensor x = Tensor::zeros({2, 3}, DType::bf16);
  EXPECT_EQ(error_of([&] { ops::softmax_forward(x); }),
            "softmax_forward: no kernel for cpu BF16 in this build");
  Tensor gamma = Tensor::zeros({3}, DType::bf16), beta = gamma, mean, rstd;
  EXPECT_EQ(error_of([&] { ops::layer_norm_forward(x, gamma, beta, 1e-5f, mean, rstd); }),
            "layer_norm_forward: no kernel for cpu BF16 in this build");
  Tensor ids = Tensor::zeros({4}, DType::i32);
  EXPECT_EQ(error_of([&] {
              ops::argmax_rows(ids.reshape({2, 2}));
            }),
            "argmax_rows: no kernel for cpu I32 in this build");
  // Only cuda picks a beam step's candidates on the device.
  EXPECT_EQ(error_of([&] {
              ops::best_tokens_rows(Tensor::zeros({1, 8}), 2, {}, 0);
            }),
            "best_tokens_rows: no kernel for cpu F32 in this build");
}

TEST(OpDispatch, EveryOpHasItsCpuF32Kernel) {
  using namespace ops::kernels;
  auto cpu_f32 = [](auto kernel) {
    return ops::has_kernel<decltype(kernel)>(Device::cpu, DType::f32);
  };
  EXPECT_TRUE(cpu_f32(batched_gemm{}) && cpu_f32(fill_rows{}) && cpu_f32(pack_linear_weight{}) &&
              cpu_f32(linear_packed{}));
  EXPECT_TRUE(cpu_f32(binary{}) && cpu_f32(reduce_add{}) && cpu_f32(reduce_rows_add{}) &&
              cpu_f32(reduce_mul_add{}) && cpu_f32(scale{}) && cpu_f32(axpy{}) && cpu_f32(sum{}) &&
              cpu_f32(sum_squares{}));
  EXPECT_TRUE(cpu_f32(embedding_forward{}) && cpu_f32(embedding_backward{}) &&
              cpu_f32(layer_norm_forward{}) && cpu_f32(layer_norm_backward{}) &&
              cpu_f32(softmax_forward{}) && cpu_f32(softmax_backward{}) &&
              cpu_f32(log_softmax_forward{}) && cpu_f32(activation_forward{}) &&
              cpu_f32(activation_backward{}) && cpu_f32(dropout_forward{}) &&
              cpu_f32(dropout_backward{}));
  EXPECT_TRUE(cpu_f32(rms_norm_forward{}) && cpu_f32(rms_norm_backward{}) &&
              cpu_f32(rope_forward{}) && cpu_f32(rope_backward{}));
  EXPECT_TRUE(cpu_f32(permute{}) && cpu_f32(join_rows{}) && cpu_f32(split_rows{}) &&
              cpu_f32(attention_naive_forward{}) && cpu_f32(attention_naive_backward{}) &&
              cpu_f32(attention_tiled_forward{}) && cpu_f32(attention_tiled_backward{}) &&
              cpu_f32(cross_entropy_forward{}) && cpu_f32(cross_entropy_backward{}) &&
              cpu_f32(adam_update{}) && cpu_f32(copy_rows{}) && cpu_f32(gather_rows{}) &&
              cpu_f32(argmax_rows{}));
}

#ifdef QKV_WITH_CUDA
TEST(OpDispatch, CudaBuildsRegisterTheirKernels) {
  using namespace ops::kernels;
  EXPECT_TRUE(ops::has_kernel<softmax_forward>(Device::cuda, DType::f32));
  EXPECT_TRUE(ops::has_kernel<flash_attention_forward>(Device::cuda, DType::bf16));
  EXPECT_TRUE(ops::has_kernel<flash_attention_forward>(Device::cuda, DType::f16));
  EXPECT_FALSE(ops::has_kernel<flash_attention_forward>(Device::cuda, DType::f32));
  EXPECT_FALSE(ops::has_kernel<linear_packed>(Device::cuda, DType::f32));  // cpu only
}
#else
TEST(OpDispatch, BuildsWithoutCudaHaveNoCudaKernel) {
  EXPECT_FALSE(ops::has_kernel<ops::kernels::softmax_forward>(Device::cuda, DType::f32));
}
#endif

// A dtype the op had no kernel for: one kernel and its registration make ops::scale run on it.
void scale_i64(const int64_t* x, float s, int64_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = int64_t(double(x[i]) * s);
}
QKV_REGISTER_KERNEL(scale, Device::cpu, int64_t, scale_i64);

TEST(OpDispatch, ANewDtypeIsOneKernelAndOneRegistration) {
  Tensor x = Tensor::empty({3}, DType::i64);
  for (int64_t i = 0; i < 3; ++i) x.data<int64_t>()[i] = 10 * (i + 1);
  Tensor y = ops::scale(x, 0.5f);
  ASSERT_EQ(y.dtype(), DType::i64);
  EXPECT_EQ(y.data<int64_t>()[0], 5);
  EXPECT_EQ(y.data<int64_t>()[1], 10);
  EXPECT_EQ(y.data<int64_t>()[2], 15);
  // Its neighbours are untouched: axpy has no i64 kernel.
  EXPECT_EQ(error_of([&] { ops::axpy(1.f, x, y); }), "axpy: no kernel for cpu I64 in this build");
}

TEST(OpDispatch, MixedDtypesAreNamed) {
  Tensor a = Tensor::zeros({2}), b = Tensor::zeros({2}, DType::bf16);
  EXPECT_EQ(error_of([&] { ops::add(a, b); }), "add: tensors of different dtypes: F32 and BF16");
}

}  // namespace
}  // namespace qkv
