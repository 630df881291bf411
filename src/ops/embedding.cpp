// Embedding lookup: checks of ids and table, then the kernel of the table's device and dtype.
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {
// Checks the ids against the table on the host; returns them there (a copy when on cuda).
Tensor check_ids(const char* op, const Tensor& ids, const Tensor& table) {
  QKV_REQUIRE(ids.dtype() == DType::i32, op, "ids must be I32, got " + dtype_name(ids.dtype()));
  QKV_REQUIRE(table.rank() == 2, op,
              "table must be [vocab, dim], got " + dtype_name(table.dtype()) + " " +
                  shape_str(table.shape()));
  const int64_t vocab = table.size(0);
  Tensor host = on_host(ids);
  const int32_t* id = host.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    QKV_REQUIRE(id[i] >= 0 && id[i] < vocab, op,
                "id " + std::to_string(id[i]) + " at position " + std::to_string(i) +
                    " is outside the vocabulary of size " + std::to_string(vocab) +
                    " (valid ids are 0.." + std::to_string(vocab - 1) + ")");
  return host;
}
}  // namespace

Tensor embedding_forward(const Tensor& ids, const Tensor& table, float scale) {
  Device dev = common_device("embedding", {&ids, &table});
  check_ids("embedding", ids, table);
  Shape shape = ids.shape();
  shape.push_back(table.size(1));
  Tensor y = Tensor::empty(shape, table.dtype(), dev);  // [..., dim]
  dispatch<kernels::embedding_forward>(dev, table.dtype(), [&]<typename T>(auto* kernel) {
    kernel(ids.data<int32_t>(), ids.numel(), table.data<T>(), table.size(1), scale, y.data<T>());
  });
  return y;
}

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable, float scale) {
  const char* op = "embedding_backward";
  if (!dtable.defined()) return;
  Device dev = common_device(op, {&dy, &ids, &dtable});
  Tensor host_ids = check_ids(op, ids, dtable);
  Shape want = ids.shape();
  want.push_back(dtable.size(1));
  QKV_REQUIRE(dy.shape() == want && dy.dtype() == dtable.dtype(), op,
              "dy is " + dtype_name(dy.dtype()) + " " + shape_str(dy.shape()) + ", expected " +
                  dtype_name(dtable.dtype()) + " " + shape_str(want));
  dispatch<kernels::embedding_backward>(dev, dtable.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), ids.data<int32_t>(), host_ids.data<int32_t>(), ids.numel(), dtable.size(1),
           scale, dtable.data<T>());
  });
}

}  // namespace qkv::ops
