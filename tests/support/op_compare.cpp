#include "support/op_compare.h"

#include <gtest/gtest.h>

namespace qkv::test {

TensorMap run_qkv(const QkvFn& f, const TensorMap& inputs, const Tensor& dout) {
  VarMap vars;
  for (auto& [name, t] : inputs) vars[name] = Var(t, t.dtype() == DType::f32);
  Tape tape;
  Var out, loss;
  {
    Recording rec(tape);
    out = f(vars);
    loss = sum(mul(out, Var(dout)));
  }
  tape.backward(loss);
  TensorMap result{{"out", out.value()}};
  for (auto& [name, v] : vars)
    if (v.requires_grad()) result["d_" + name] = v.has_grad() ? v.grad() : Tensor::zeros(v.shape());
  return result;
}

void compare_with_torch(const std::string& op, const TensorMap& inputs, const nlohmann::json& attrs,
                        const QkvFn& f, double tol_out, double tol_grad, Rng& rng) {
  VarMap probe;
  for (auto& [name, t] : inputs) probe[name] = Var(t);
  Tensor dout = randn(f(probe).shape(), rng);
  TensorMap with_dout = inputs;
  with_dout["dout"] = dout;
  TensorMap want = torch_reference(op, with_dout, attrs);
  TensorMap got = run_qkv(f, inputs, dout);
  for (auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << op << ": qkv gave no " << name;
    expect_close(got[name], t, name == "out" ? tol_out : tol_grad, op + " " + name);
  }
}

}  // namespace qkv::test
