"""PyTorch reference for qkv's op tests, run as a server by tests/support/torch_ref.cpp.

Each request is one JSON line on stdin: {"op": NAME, "in": PATH, "out": PATH, "attrs": {...}}.
Inputs come from the safetensors file PATH; floating inputs become float64 tensors that require
a gradient, integer inputs int64 tensors. The op runs in float64 and results are rounded to float32; if the inputs hold "dout", the
gradients of sum(out * dout) with respect to every floating input are written as "d_<name>".
The reply is one line: "ok" or "error: <message>".
"""
import json
import math
import sys
import traceback

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__file__))
import safetensors_np  # noqa: E402


def attention(t, a):
    q, k, v = t["q"], t["k"], t["v"]
    lq, lk = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-1, -2) * a["scale"]
    allowed = torch.ones(q.shape[0], 1, lq, lk, dtype=torch.bool)
    if a.get("causal"):
        i = torch.arange(lq)[:, None]
        j = torch.arange(lk)[None, :]
        allowed = allowed & (j <= i + (lk - lq))
    if "key_lengths" in t:
        j = torch.arange(lk)[None, None, None, :]
        allowed = allowed & (j < t["key_lengths"][:, None, None, None])
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    probs = torch.where(allowed.any(-1, keepdim=True), probs, torch.zeros_like(probs))
    return probs @ v


def rms_norm(t, a):
    """Hugging Face's LlamaRMSNorm (torch.nn.functional.rms_norm), here in float64."""
    x = t["x"]
    variance = x.pow(2).mean(-1, keepdim=True)
    return t["gamma"] * (x * torch.rsqrt(variance + a.get("eps", 1e-6)))


def rope_inverse_frequencies(a, d):
    """inv_freq [D/2] of Hugging Face's rope types default ("none" here), linear and llama3
    (modeling_rope_utils: _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
    _compute_llama3_parameters), in float64."""
    inv_freq = 1.0 / (a["theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
    scaling = a.get("scaling", "none")
    if scaling == "none":
        return inv_freq
    factor = a["factor"]
    if scaling == "linear":
        return inv_freq / factor
    low, high, original = a["low_freq_factor"], a["high_freq_factor"], a["original"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < original / high) * ~(wavelen > original / low)
    return torch.where(medium, smoothed, scaled)


def rope(t, a):
    """Hugging Face Llama's rotary embedding (LlamaRotaryEmbedding, apply_rotary_pos_emb), here in
    float64: x [B, H, L, D], positions [B, L]."""
    x, d = t["x"], t["x"].shape[-1]
    inv_freq = rope_inverse_frequencies(a, d)
    freqs = t["positions"].double()[..., None] * inv_freq  # [B, L, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, L, D]
    rotated_half = torch.cat((-x[..., d // 2:], x[..., :d // 2]), dim=-1)
    return x * emb.cos() + rotated_half * emb.sin()


def cross_entropy(t, a):
    return F.cross_entropy(t["logits"], t["targets"], ignore_index=a["ignore_index"],
                           label_smoothing=a["label_smoothing"], reduction="none")


def distillation_kl_sum(t, a):
    """T^2 KL(softmax(teacher / T) || softmax(logits / T)) summed over the scored rows (Hinton et
    al. 2015); the teacher is a constant."""
    temp = a["temperature"]
    keep = t["targets"] != a["ignore_index"]
    student = F.log_softmax(t["logits"][keep] / temp, -1)
    teacher = F.log_softmax(t["teacher"].detach()[keep] / temp, -1)
    return (temp * temp * F.kl_div(student, teacher, log_target=True, reduction="sum")).reshape(1)


def adam(t, a):
    """Runs len(grads) optimizer steps (AdamW when weight_decay > 0) from param; returns the final
    param and moments stacked: [3, *param.shape]."""
    param = t["param"].detach().clone().requires_grad_(True)
    kind = torch.optim.AdamW if a.get("weight_decay", 0.0) > 0 else torch.optim.Adam
    opt = kind([param], lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"],
               weight_decay=a.get("weight_decay", 0.0))
    for g in t["grads"].detach():
        param.grad = g * a.get("grad_scale", 1.0)
        opt.step()
    state = opt.state[param]
    return torch.stack([param.detach(), state["exp_avg"], state["exp_avg_sq"]])


def weight_average(t, a):
    """torch.optim.swa_utils.AveragedModel over weights[0] (the start) .. weights[T] (after
    update T), with qkv's decay min(decay, (1 + t) / (10 + t)) at update t; returns the average."""
    weights = t["weights"].detach()
    model = torch.nn.Linear(1, 1, bias=False)  # holds one parameter of weights[0]'s shape
    model.weight = torch.nn.Parameter(weights[0].clone())

    def avg_fn(average, current, updates):  # updates (n_averaged): t at update t
        step = int(updates)
        decay = min(a["decay"], (1 + step) / (10 + step))
        return decay * average + (1 - decay) * current

    averaged = torch.optim.swa_utils.AveragedModel(model, avg_fn=avg_fn)
    averaged.update_parameters(model)  # the first call copies: the average starts at weights[0]
    for w in weights[1:]:
        model.weight.data.copy_(w)
        averaged.update_parameters(model)
    return averaged.module.weight.detach()


OPS = {
    "matmul": lambda t, a: (t["a"].transpose(-1, -2) if a.get("trans_a") else t["a"])
    @ (t["b"].transpose(-1, -2) if a.get("trans_b") else t["b"]),
    "linear": lambda t, a: F.linear(t["x"], t["w"], t.get("bias")),
    "add": lambda t, a: t["a"] + t["b"],
    "mul": lambda t, a: t["a"] * t["b"],
    "scale": lambda t, a: t["x"] * a["s"],
    "sum": lambda t, a: t["x"].sum().reshape(1),
    "embedding": lambda t, a: F.embedding(t["ids"], t["table"]) * a.get("scale", 1.0),
    "layer_norm": lambda t, a: F.layer_norm(t["x"], t["x"].shape[-1:], t["gamma"], t["beta"],
                                            a.get("eps", 1e-5)),
    "rms_norm": rms_norm,
    "rope": rope,
    "softmax": lambda t, a: torch.softmax(t["x"], -1),
    "log_softmax": lambda t, a: torch.log_softmax(t["x"], -1),
    "logsumexp": lambda t, a: torch.logsumexp(t["x"], -1),
    "relu": lambda t, a: F.relu(t["x"]),
    "gelu": lambda t, a: F.gelu(t["x"]),
    "gelu_tanh": lambda t, a: F.gelu(t["x"], approximate="tanh"),
    "silu": lambda t, a: F.silu(t["x"]),
    "permute": lambda t, a: t["x"].permute(*a["dims"]),
    "concat": lambda t, a: torch.cat([t[f"x{i}"] for i in range(a["n"])], a["axis"]),
    "split": lambda t, a: torch.split(t["x"], a["sizes"], a["axis"])[a["index"]],
    "slice_rows": lambda t, a: t["x"][a["begin"]:a["end"]],
    "gather_rows": lambda t, a: t["x"][t["index"]],
    "scatter_add_rows": lambda t, a: torch.zeros(a["rows"], t["x"].shape[1], dtype=torch.float64)
    .index_add(0, t["index"], t["x"]),
    "attention": attention,
    "cross_entropy": cross_entropy,
    "cross_entropy_sum": lambda t, a: cross_entropy(t, a).sum().reshape(1),
    "distillation_kl_sum": distillation_kl_sum,
    "adam": adam,
    "weight_average": weight_average,
}


def run(req):
    arrays, _ = safetensors_np.load(req["in"])
    tensors = {}
    for name, arr in arrays.items():
        if name == "dout":
            continue
        if np.issubdtype(arr.dtype, np.floating):
            tensors[name] = torch.tensor(arr, dtype=torch.float64, requires_grad=True)
        else:
            tensors[name] = torch.tensor(arr.astype(np.int64))
    out = OPS[req["op"]](tensors, req.get("attrs", {}))
    result = {"out": out.detach().numpy().astype(np.float32)}
    if "dout" in arrays:
        floats = [n for n, t in tensors.items() if t.requires_grad]
        grads = torch.autograd.grad((out * torch.tensor(arrays["dout"], dtype=torch.float64)).sum(),
                                    [tensors[n] for n in floats], allow_unused=True)
        for n, g in zip(floats, grads):
            result["d_" + n] = (g if g is not None else torch.zeros_like(tensors[n])).numpy().astype(np.float32)
    safetensors_np.save(req["out"], result)


def main():
    torch.set_num_threads(1)
    for line in sys.stdin:
        try:
            run(json.loads(line))
            reply = "ok"
        except Exception as e:  # the C++ side reports it as a test failure
            reply = "error: " + repr(e) + " " + traceback.format_exc().replace("\n", " | ")
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
