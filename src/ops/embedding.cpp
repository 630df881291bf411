// Embedding lookup: checks of ids and table, then the device's kernel.
#include "ops/cpu/kernels.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"

namespace qkv::ops {

namespace {
// Checks the ids against the table on the host; returns them there (a copy when on cuda).
Tensor check_ids(const char* op, const Tensor& ids, const Tensor& table) {
  QKV_REQUIRE(ids.dtype() == DType::i32, op, "ids must be I32, got " + dtype_name(ids.dtype()));
  QKV_REQUIRE(table.rank() == 2 && table.dtype() == DType::f32, op,
              "table must be F32 [vocab, dim], got " + dtype_name(table.dtype()) + " " +
                  shape_str(table.shape()));
  int64_t vocab = table.size(0);
  Tensor host = on_host(ids);
  int64_t bad = cpu::first_bad_id(host.data<int32_t>(), ids.numel(), vocab);
  QKV_REQUIRE(bad < 0, op,
              "id " + std::to_string(bad < 0 ? 0 : host.data<int32_t>()[bad]) + " at position " +
                  std::to_string(bad) + " is outside the vocabulary of size " +
                  std::to_string(vocab) + " (valid ids are 0.." + std::to_string(vocab - 1) + ")");
  return host;
}
}  // namespace

Tensor embedding_forward(const Tensor& ids, const Tensor& table, float scale) {
  Device dev = common_device("embedding", {&ids, &table});
  check_ids("embedding", ids, table);
  Shape shape = ids.shape();
  shape.push_back(table.size(1));
  Tensor y = Tensor::empty(shape, DType::f32, dev);  // [..., dim]
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL("embedding",
                    cuda::embedding_forward(ids.data<int32_t>(), ids.numel(), table.data<float>(),
                                            table.size(1), scale, y.data<float>()));
  else
    cpu::embedding_forward(ids.data<int32_t>(), ids.numel(), table.data<float>(), table.size(1),
                           scale, y.data<float>());
  return y;
}

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable, float scale) {
  if (!dtable.defined()) return;
  Device dev = common_device("embedding_backward", {&dy, &ids, &dtable});
  Tensor host_ids = check_ids("embedding_backward", ids, dtable);
  Shape want = ids.shape();
  want.push_back(dtable.size(1));
  QKV_REQUIRE(dy.shape() == want && dy.dtype() == DType::f32, "embedding_backward",
              "dy is " + shape_str(dy.shape()) + ", expected F32 " + shape_str(want));
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL(
        "embedding_backward",
        cuda::embedding_backward(dy.data<float>(), host_ids.data<int32_t>(), ids.numel(),
                                 dtable.size(1), scale, dtable.data<float>()));
  else
    cpu::embedding_backward(dy.data<float>(), ids.data<int32_t>(), ids.numel(), dtable.size(1),
                            scale, dtable.data<float>());
}

}  // namespace qkv::ops
