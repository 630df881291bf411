// The emulated CUDA runtime's own guards (tests/cuda_emulation): what makes a pass of the CUDA
// tests there mean something. Built only where the CUDA tests run on the emulation
// (qkv_core_emulated, tests/CMakeLists.txt): it tests nothing elsewhere.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ops/kernel_registry.h"
#include "ops/kernels.h"
#include "tensor/tensor.h"

namespace qkv {
namespace {

#ifndef QKV_CUDA_EMULATED
#error "test_cuda_emulation.cpp tests the emulated CUDA runtime: only qkv_core_emulated has it"
#endif

// The cuda kernels, called directly (past the ops' checks).
void cuda_scale(const float* x, float s, float* y, int64_t n) {
  ops::find_kernel<ops::kernels::scale, float>(Device::cuda)(x, s, y, n);
}

TEST(CudaEmulation, HostCodeTouchingDeviceMemoryDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor t = Tensor::zeros({4}).to(Device::cuda);
  EXPECT_DEATH((void)*static_cast<volatile float*>(t.raw()), "host code .* touched device memory");
}

TEST(CudaEmulation, KernelRunningPastItsAllocationDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor x = Tensor::zeros({64}).to(Device::cuda), y = Tensor::zeros({1}).to(Device::cuda);
  // 64 floats into a one-float allocation: past its 256-byte rounding, into the guard page.
  EXPECT_DEATH(cuda_scale(x.data<float>(), 1.f, y.data<float>(), 1 << 12),
               "scale_kernel touched device memory .* past the end of");
}

// A GPU faults on a misaligned access where x86 would load quietly; so does the emulation.
TEST(CudaEmulation, MisalignedAccessDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor x = Tensor::zeros({64}).to(Device::cuda), y = Tensor::zeros({64}).to(Device::cuda);
  const float* odd = reinterpret_cast<const float*>(static_cast<const char*>(x.raw()) + 2);
  EXPECT_DEATH(cuda_scale(odd, 1.f, y.data<float>(), 16), "misaligned address");

  // FlashAttention's 16-byte cp.async of a query row that starts one element late.
  Tensor q = Tensor::zeros({1, 1, 16, 64}, DType::bf16, Device::cuda), k = q.clone(), v = q.clone(),
         out = q.clone(), lse = Tensor::zeros({16}, DType::f32, Device::cuda);
  ops::FlashShape s{1, 1, 15, 16, 64, false, nullptr, 0.125f};
  const bf16* late = reinterpret_cast<const bf16*>(static_cast<const char*>(q.raw()) + 2);
  auto* flash_forward = ops::find_kernel<ops::kernels::flash_attention_forward, bf16>(Device::cuda);
  EXPECT_DEATH(
      flash_forward(s, late, k.data<bf16>(), v.data<bf16>(), out.data<bf16>(), lse.data<float>()),
      "misaligned address in .*: a cp.async source");
}

TEST(CudaEmulation, HostPointerAsKernelArgumentIsALaunchError) {
  std::vector<float> host(8, 1.f);
  Tensor y = Tensor::zeros({8}).to(Device::cuda);
  try {
    cuda_scale(host.data(), 2.f, y.data<float>(), 8);
    FAIL() << "a host pointer was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("scale"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qkv
