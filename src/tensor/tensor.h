// Tensor: a contiguous, row-major block of elements with a shape, a dtype and a device.
// Copies share storage (like a shared_ptr); reshape and slicing along the first axis are free
// views; everything else that reorders elements is an explicit op.
#pragma once
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace qkv {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// One block of memory from a device's caching allocator; returned to it when the last
// Tensor referencing it goes away.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t bytes_;
  size_t capacity_;  // the allocator's block size (>= bytes_)
  Device device_;
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::u8;
}
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::i8;
}
template <>
constexpr DType dtype_of<bf16>() {
  return DType::bf16;
}
template <>
constexpr DType dtype_of<f16>() {
  return DType::f16;
}

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised memory.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return int(shape_.size()); }
  // Size of axis i; negative i counts from the end.
  int64_t size(int i) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  template <class T>
  T* data() {
    check_dtype(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <class T>
  const T* data() const {
    check_dtype(dtype_of<T>());
    return static_cast<const T*>(raw());
  }
  void* raw() const { return static_cast<char*>(storage_->data()) + offset_; }
  // True when both tensors view the same storage.
  bool shares_storage(const Tensor& o) const { return storage_ == o.storage_; }

  // A view with another shape of the same element count; one axis may be -1.
  Tensor reshape(const Shape& shape) const;
  // A view of rows [begin, end) along axis 0.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  Tensor clone() const;
  Tensor to(Device device) const;
  // f32 <-> bf16 <-> f16 conversions (a copy; the same dtype returns *this).
  Tensor cast(DType dtype) const;
  void fill(float value);
  void zero();
  void copy_from(const Tensor& src);  // same numel and dtype; devices may differ

  // Host-side element access for tests and small utilities.
  std::vector<float> to_vector() const;
  float item() const;

 private:
  void check_dtype(DType expected) const;

  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes into storage_
  Shape shape_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
};

// Throws std::invalid_argument with `what` and the shapes when the condition fails.
void check_shape(bool ok, const std::string& what);
// The same with a callable that returns the message, so that it is built only on failure
// (checks on every tensor of a decoding step).
template <class F>
requires std::invocable<F>
void check_shape(bool ok, F&& what) {
  if (!ok) check_shape(false, std::string(what()));
}

}  // namespace qkv
