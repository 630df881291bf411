#include "tensor/tensor.h"

#include <cstring>
#include <sstream>

#include "tensor/allocator.h"

namespace qkv {

#ifdef QKV_WITH_CUDA
void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void cuda_memset_zero(void* dst, size_t bytes);
void cuda_cast(const void* src, DType from, void* dst, DType to, int64_t n);
void cuda_fill(void* dst, DType dtype, float value, int64_t n);
#endif

namespace {
void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t bytes) {
  if (bytes == 0) return;
  if (dd == Device::cpu && sd == Device::cpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef QKV_WITH_CUDA
  cuda_copy(dst, dd, src, sd, bytes);
#else
  throw std::runtime_error("qkv was built without CUDA (configure with -DQKV_CUDA=ON)");
#endif
}

bool cast_supported(DType from, DType to) {
  auto is = [&](DType f, DType t) { return from == f && to == t; };
  return is(DType::f32, DType::bf16) || is(DType::bf16, DType::f32) || is(DType::f32, DType::f16) ||
         is(DType::f16, DType::f32) || is(DType::i32, DType::f32) || is(DType::i64, DType::i32);
}
}  // namespace

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

void check_shape(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

Storage::Storage(size_t bytes, Device device)
    : data_(allocator_for(device).allocate(bytes, &capacity_)), bytes_(bytes), device_(device) {}

Storage::~Storage() {
  allocator_for(device_).deallocate(data_, capacity_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    check_shape(d >= 0, [&] { return "negative dimension in shape " + shape_str(shape); });
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  check_shape(int64_t(values.size()) == shape_numel(shape), [&] {
    return "from_vector: " + std::to_string(values.size()) + " values for shape " +
           shape_str(shape);
  });
  Tensor t = empty(shape);
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_vector(const std::vector<int32_t>& values, const Shape& shape) {
  check_shape(int64_t(values.size()) == shape_numel(shape), [&] {
    return "from_vector: " + std::to_string(values.size()) + " values for shape " +
           shape_str(shape);
  });
  Tensor t = empty(shape, DType::i32);
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

int64_t Tensor::size(int i) const {
  int r = rank();
  if (i < 0) i += r;
  check_shape(i >= 0 && i < r, [&] {
    return "axis " + std::to_string(i) + " out of range for shape " + shape_str(shape_);
  });
  return shape_[i];
}

void Tensor::check_dtype(DType expected) const {
  if (!defined()) throw std::logic_error("access to an undefined tensor");
  if (expected != dtype_)
    throw std::logic_error("tensor holds " + dtype_name(dtype_) + ", accessed as " +
                           dtype_name(expected));
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      check_shape(infer < 0, [&] { return "reshape: more than one -1 in " + shape_str(shape); });
      infer = int64_t(i);
    } else {
      check_shape(s[i] >= 0, [&] { return "reshape: negative size in " + shape_str(shape); });
      known *= s[i];
    }
  }
  if (infer >= 0) {
    check_shape(known > 0, [&] {
      return "reshape: the -1 in " + shape_str(shape) + " is ambiguous for " + shape_str(shape_) +
             " (the other sizes multiply to 0)";
    });
    s[infer] = numel() / known;
  }
  check_shape(shape_numel(s) == numel(), [&] {
    return "reshape: cannot view " + shape_str(shape_) + " as " + shape_str(shape);
  });
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  check_shape(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], [&] {
    return "slice_rows [" + std::to_string(begin) + ", " + std::to_string(end) +
           ") out of range for shape " + shape_str(shape_);
  });
  Tensor t = *this;
  int64_t row = shape_numel(Shape(shape_.begin() + 1, shape_.end()));
  t.offset_ += size_t(begin * row) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::cast(DType dtype) const {
  if (dtype == dtype_) return *this;
  if (!cast_supported(dtype_, dtype))
    throw std::invalid_argument("Tensor::cast from " + dtype_name(dtype_) + " to " +
                                dtype_name(dtype) + " is not supported");
  Tensor t = empty(shape_, dtype, device_);
  int64_t n = numel();
  if (device_ == Device::cuda) {
#ifdef QKV_WITH_CUDA
    cuda_cast(raw(), dtype_, t.raw(), dtype, n);
#endif
    return t;
  }
  if (dtype_ == DType::f32 && dtype == DType::bf16) {
    const float* s = data<float>();
    bf16* d = t.data<bf16>();
    for (int64_t i = 0; i < n; ++i) d[i] = to_bf16(s[i]);
  } else if (dtype_ == DType::bf16 && dtype == DType::f32) {
    const bf16* s = data<bf16>();
    float* d = t.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = from_bf16(s[i]);
  } else if (dtype_ == DType::f32 && dtype == DType::f16) {
    const float* s = data<float>();
    f16* d = t.data<f16>();
    for (int64_t i = 0; i < n; ++i) d[i] = to_f16(s[i]);
  } else if (dtype_ == DType::f16 && dtype == DType::f32) {
    const f16* s = data<f16>();
    float* d = t.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = from_f16(s[i]);
  } else if (dtype_ == DType::i32 && dtype == DType::f32) {
    const int32_t* s = data<int32_t>();
    float* d = t.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = float(s[i]);
  } else {  // i64 -> i32
    const int64_t* s = data<int64_t>();
    int32_t* d = t.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) d[i] = int32_t(s[i]);
  }
  return t;
}

void Tensor::fill(float value) {
  int64_t n = numel();
  if (dtype_ != DType::f32 && dtype_ != DType::i32)
    throw std::invalid_argument("Tensor::fill supports F32 and I32");
  if (device_ == Device::cuda) {
#ifdef QKV_WITH_CUDA
    cuda_fill(raw(), dtype_, value, n);
#endif
    return;
  }
  if (dtype_ == DType::f32) {
    float* d = data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = value;
  } else {
    int32_t* d = data<int32_t>();
    for (int64_t i = 0; i < n; ++i) d[i] = int32_t(value);
  }
}

void Tensor::zero() {
  if (device_ == Device::cpu) {
    std::memset(raw(), 0, nbytes());
    return;
  }
#ifdef QKV_WITH_CUDA
  cuda_memset_zero(raw(), nbytes());
#endif
}

void Tensor::copy_from(const Tensor& src) {
  check_shape(src.numel() == numel() && src.dtype_ == dtype_, [&] {
    return "copy_from: " + shape_str(src.shape_) + " " + dtype_name(src.dtype_) + " into " +
           shape_str(shape_) + " " + dtype_name(dtype_);
  });
  copy_bytes(raw(), device_, src.raw(), src.device_, nbytes());
}

std::vector<float> Tensor::to_vector() const {
  Tensor host = to(Device::cpu).cast(DType::f32);
  const float* p = host.data<float>();
  return std::vector<float>(p, p + numel());
}

float Tensor::item() const {
  check_shape(numel() == 1, [&] { return "item() of a tensor with shape " + shape_str(shape_); });
  return to_vector()[0];
}

}  // namespace qkv
