// Softmax cross-entropy with label smoothing and an ignored target: checks here, the fused row
// loops in the kernels (ops/cpu/cross_entropy.cpp, ops/cuda/cross_entropy.cu).
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {
void check_cross_entropy(const char* op, const Tensor& logits, const Tensor& targets,
                         int ignore_index, float label_smoothing) {
  QKV_REQUIRE(logits.rank() == 2 && logits.size(1) > 0, op,
              "logits must be [N, V] with V > 0, got " + shape_str(logits.shape()));
  QKV_REQUIRE(targets.dtype() == DType::i32 && targets.shape() == Shape{logits.size(0)}, op,
              "targets must be I32 [" + std::to_string(logits.size(0)) + "], got " +
                  shape_str(targets.shape()));
  QKV_REQUIRE(label_smoothing >= 0.f && label_smoothing <= 1.f, op,
              "label_smoothing " + std::to_string(label_smoothing) + " outside [0, 1]");
  common_device(op, {&logits, &targets});
  Tensor host_targets = on_host(targets);
  const int32_t* t = host_targets.data<int32_t>();
  int64_t vocab = logits.size(1);
  for (int64_t i = 0; i < targets.numel(); ++i)
    QKV_REQUIRE(t[i] == ignore_index || (t[i] >= 0 && t[i] < vocab), op,
                "target " + std::to_string(t[i]) + " of row " + std::to_string(i) +
                    " outside [0, " + std::to_string(vocab) + ") and not ignore_index " +
                    std::to_string(ignore_index));
}
}  // namespace

Tensor cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index,
                             float label_smoothing, Tensor& lse) {
  check_cross_entropy("cross_entropy", logits, targets, ignore_index, label_smoothing);
  int64_t n = logits.size(0);
  Tensor loss = Tensor::empty({n}, DType::f32, logits.device());
  lse = Tensor::empty({n}, DType::f32, logits.device());
  dispatch<kernels::cross_entropy_forward>(
      logits.device(), logits.dtype(), [&]<typename T>(auto* kernel) {
        kernel(logits.data<T>(), targets.data<int32_t>(), n, logits.size(1), ignore_index,
               label_smoothing, loss.data<float>(), lse.data<float>());
      });
  return loss;
}

void cross_entropy_backward(const Tensor& dloss, const Tensor& logits, const Tensor& targets,
                            int ignore_index, float label_smoothing, const Tensor& lse,
                            Tensor& dlogits) {
  const char* op = "cross_entropy_backward";
  if (!dlogits.defined()) return;
  check_cross_entropy(op, logits, targets, ignore_index, label_smoothing);
  Shape rows{logits.size(0)};
  QKV_REQUIRE(dloss.shape() == rows && lse.shape() == rows && dlogits.shape() == logits.shape() &&
                  dloss.dtype() == DType::f32 && lse.dtype() == DType::f32,
              op,
              "dloss " + shape_str(dloss.shape()) + ", lse " + shape_str(lse.shape()) +
                  " (F32) and dlogits " + shape_str(dlogits.shape()) + " do not fit logits " +
                  shape_str(logits.shape()));
  common_dtype(op, {&logits, &dlogits});
  Device dev = common_device(op, {&dloss, &logits, &lse, &dlogits});
  dispatch<kernels::cross_entropy_backward>(dev, logits.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dloss.data<float>(), logits.data<T>(), targets.data<int32_t>(), logits.size(0),
           logits.size(1), ignore_index, label_smoothing, lse.data<float>(), dlogits.data<T>());
  });
}

}  // namespace qkv::ops
