#include "ops/compute_type.h"

#include <stdexcept>

#include "ops/checks.h"
#include "ops/cpu/low_precision.h"
#include "ops/ops.h"

namespace qkv::ops {

ComputeType compute_type_from_name(const std::string& name) {
  if (name == "f32" || name == "float32") return ComputeType::f32;
  if (name == "bf16" || name == "bfloat16") return ComputeType::bf16;
  if (name == "int8") return ComputeType::int8;
  throw std::invalid_argument("compute type must be f32, bf16 or int8, got '" + name + "'");
}

const char* compute_type_name(ComputeType type) {
  switch (type) {
    case ComputeType::bf16:
      return "bf16";
    case ComputeType::int8:
      return "int8";
    case ComputeType::f32:
      break;
  }
  return "f32";
}

const char* low_precision_isa() {
  return cpu::isa_name(cpu::cpu_isa());
}

namespace {
constexpr int64_t kInt8MaxInputs = int64_t(1) << 17;  // ops/cpu/low_precision.h

void require_cpu_f32(const char* op, const Tensor& t, const char* what) {
  QKV_REQUIRE(t.device() == Device::cpu && t.dtype() == DType::f32, op,
              std::string(what) + " must be f32 on the cpu, got " + dtype_name(t.dtype()) + " on " +
                  device_name(t.device()));
}
}  // namespace

void quantize_rows_int8(const Tensor& w, Tensor& q, Tensor& scale) {
  QKV_REQUIRE(w.rank() == 2, "quantize_rows_int8", "needs [n, k], got " + shape_str(w.shape()));
  require_cpu_f32("quantize_rows_int8", w, "the weight");
  q = Tensor::empty(w.shape(), DType::i8);
  scale = Tensor::empty({w.size(0)});
  cpu::quantize_rows_int8(w.data<float>(), w.size(0), w.size(1), q.data<int8_t>(),
                          scale.data<float>());
}

Tensor dequantize_rows_int8(const Tensor& q, const Tensor& scale) {
  QKV_REQUIRE(q.rank() == 2 && q.dtype() == DType::i8 && q.device() == Device::cpu &&
                  scale.shape() == Shape{q.size(0)} && scale.dtype() == DType::f32,
              "dequantize_rows_int8",
              "needs q i8 [n, k] and scale f32 [n] on the cpu, got " + shape_str(q.shape()) +
                  " and " + shape_str(scale.shape()));
  Tensor w = Tensor::empty(q.shape());
  const int8_t* qd = q.data<int8_t>();
  const float* s = scale.data<float>();
  float* wd = w.data<float>();
  for (int64_t c = 0; c < q.size(0); ++c)
    for (int64_t i = 0; i < q.size(1); ++i) wd[c * q.size(1) + i] = qd[c * q.size(1) + i] * s[c];
  return w;
}

PackedWeight pack_linear(const Tensor& w, ComputeType type) {
  QKV_REQUIRE(w.rank() == 2, "pack_linear",
              "needs a weight [out, in], got " + shape_str(w.shape()));
  require_cpu_f32("pack_linear", w, "the weight");
  PackedWeight p{type, Tensor(), Tensor(), w.size(0), w.size(1)};
  switch (type) {
    case ComputeType::f32:
      p.packed = pack_linear_weight(w);
      break;
    case ComputeType::bf16: {
      cpu::Isa isa = cpu::cpu_isa();
      p.packed = Tensor::empty({cpu::bf16_packed_elements(p.out, p.in, isa)}, DType::bf16);
      cpu::pack_bf16(w.data<float>(), p.out, p.in, isa, &p.packed.data<bf16>()->bits);
      break;
    }
    case ComputeType::int8: {
      QKV_REQUIRE(p.in <= kInt8MaxInputs, "pack_linear",
                  "int8 products take at most " + std::to_string(kInt8MaxInputs) +
                      " inputs (their int32 sums), got " + std::to_string(p.in));
      Tensor q;
      quantize_rows_int8(w, q, p.scale);
      cpu::Isa isa = cpu::cpu_isa();
      p.packed = Tensor::empty({cpu::int8_packed_bytes(p.out, p.in, isa)}, DType::i8);
      cpu::pack_int8(q.data<int8_t>(), p.out, p.in, isa, p.packed.data<int8_t>());
      break;
    }
  }
  return p;
}

Tensor linear_forward(const Tensor& x, const PackedWeight& w, const Tensor& bias) {
  const char* op = "linear";
  QKV_REQUIRE(x.rank() >= 1 && x.size(-1) == w.in, op,
              "input " + shape_str(x.shape()) + " does not fit a weight of " +
                  std::to_string(w.in) + " inputs");
  QKV_REQUIRE(
      !bias.defined() || (bias.shape() == Shape{w.out} && bias.dtype() == DType::f32 &&
                          bias.device() == Device::cpu),
      op,
      "bias " + shape_str(bias.shape()) + " does not fit " + std::to_string(w.out) + " outputs");
  if (w.type == ComputeType::f32) return linear_packed_forward(x, w.packed, w.out, bias);
  require_cpu_f32(op, x, "the input");
  Shape shape = x.shape();
  shape.back() = w.out;
  Tensor y = Tensor::empty(shape);
  int64_t rows = rows_of(x);
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  cpu::Isa isa = cpu::cpu_isa();
  if (w.type == ComputeType::int8)
    cpu::linear_int8(x.data<float>(), rows, w.in, w.packed.data<int8_t>(), w.scale.data<float>(), b,
                     w.out, isa, y.data<float>());
  else
    cpu::linear_bf16(x.data<float>(), rows, w.in, &w.packed.data<bf16>()->bits, b, w.out, isa,
                     y.data<float>());
  return y;
}

}  // namespace qkv::ops
