// Which kernel runs an op on which device and dtype. Each device's kernel files register their
// kernels (QKV_REGISTER_KERNEL, below) for the kernel signatures of ops/kernels.h; an op's front
// end then runs the one its tensors ask for:
//   dispatch<kernels::softmax_forward>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
//     kernel(x.data<T>(), rows, cols, y.data<T>());
//   });
// A pair with no kernel throws std::runtime_error "softmax_forward: no kernel for cuda BF16".
// Adding a dtype or a device to an op is one kernel and one registration line.
#pragma once
#include "tensor/tensor.h"

namespace qkv::ops {

constexpr int kDeviceCount = 2;  // cpu, cuda
constexpr int kDTypeCount = 7;   // f32, f16, bf16, i32, i64, u8, i8
using AnyKernel = void (*)();

// The kernels registered for Kernel, by device and dtype (null: none). Zero-initialised before
// any code runs, so registrations made during static initialisation land in any order.
template <typename Kernel>
inline AnyKernel kernel_slots[kDeviceCount][kDTypeCount] = {};

[[noreturn]] void no_kernel(const char* op, Device device, DType dtype);

template <typename Kernel, typename T>
struct KernelRegistration {
  KernelRegistration(Device device, typename Kernel::template fn<T>* kernel) {
    kernel_slots<Kernel>[int(device)][int(dtype_of<T>())] = reinterpret_cast<AnyKernel>(kernel);
  }
};

#define QKV_CONCAT_(a, b) a##b
#define QKV_CONCAT(a, b) QKV_CONCAT_(a, b)
// Registers `function` as kernels::kernel for (device, T); at namespace scope in the file that
// defines it. The function must have exactly kernels::kernel's signature for T.
#define QKV_REGISTER_KERNEL(kernel, device, T, function)                                  \
  static const ::qkv::ops::KernelRegistration<::qkv::ops::kernels::kernel, T> QKV_CONCAT( \
      kernel_registration_, __LINE__)(device, function)

// The kernel registered for (device, T), or the error naming all three.
template <typename Kernel, typename T>
typename Kernel::template fn<T>* find_kernel(Device device) {
  AnyKernel kernel = kernel_slots<Kernel>[int(device)][int(dtype_of<T>())];
  if (!kernel) no_kernel(Kernel::op_name, device, dtype_of<T>());
  return reinterpret_cast<typename Kernel::template fn<T>*>(kernel);
}

// Whether (device, dtype) has a kernel, for ops that choose between kernels.
template <typename Kernel>
bool has_kernel(Device device, DType dtype) {
  return kernel_slots<Kernel>[int(device)][int(dtype)] != nullptr;
}

// Runs body.template operator()<T>(kernel) with T the element type of dtype and kernel the one
// registered for (device, T); throws when there is none.
template <typename Kernel, typename Body>
void dispatch(Device device, DType dtype, Body&& body) {
  switch (dtype) {
    case DType::f32:
      return body.template operator()<float>(find_kernel<Kernel, float>(device));
    case DType::f16:
      return body.template operator()<f16>(find_kernel<Kernel, f16>(device));
    case DType::bf16:
      return body.template operator()<bf16>(find_kernel<Kernel, bf16>(device));
    case DType::i32:
      return body.template operator()<int32_t>(find_kernel<Kernel, int32_t>(device));
    case DType::i64:
      return body.template operator()<int64_t>(find_kernel<Kernel, int64_t>(device));
    case DType::u8:
      return body.template operator()<uint8_t>(find_kernel<Kernel, uint8_t>(device));
    case DType::i8:
      return body.template operator()<int8_t>(find_kernel<Kernel, int8_t>(device));
  }
  no_kernel(Kernel::op_name, device, dtype);
}

}  // namespace qkv::ops
