"""The gradients of a PyTorch reference model under qkv's parameter names.

The reference scripts build torch.nn models from qkv's tensors (name -> array) by copying them,
whole or as parts of concatenations, into the module's parameters. qkv_gradients() undoes that
mapping for the gradients: it builds the same model a second time from tensors that hold each
element's own index plus 2 (exact in float32 below 2**24; never the 0 or 1 of a parameter's
default initialisation, which a parameter the mapping missed would keep), so every element of a module parameter
names the qkv element it came from; the module's gradients are then summed back onto those
elements (a tied tensor used twice gets both parts).
"""
import numpy as np
import torch


def qkv_gradients(build, model, weights):
    """build(weights) -> a module like `model`; model's .grad are set. Returns {name: float32
    array of the gradient of qkv's tensor `name`}."""
    total = sum(int(np.prod(a.shape)) for a in weights.values())
    assert total + 2 < 2**24, "too many elements to index exactly in float32"
    index, offset = {}, 2
    for name, a in weights.items():
        n = int(np.prod(a.shape))
        index[name] = np.arange(offset, offset + n, dtype=np.float32).reshape(a.shape)
        offset += n
    indexed = build(index)
    sums = torch.zeros(total, dtype=torch.float64)
    mine = dict(model.named_parameters())
    for name, p in indexed.named_parameters():
        at = p.detach().flatten()
        assert torch.equal(at, at.round()) and bool((at >= 2).all()) and bool((at < total + 2).all()), \
            f"{name} is not copied from qkv's tensors"
        g = mine[name].grad
        assert g is not None, f"{name} has no gradient"
        sums.index_add_(0, at.long() - 2, g.detach().flatten().double())
    out, offset = {}, 0
    for name, a in weights.items():
        n = int(np.prod(a.shape))
        out[name] = sums[offset: offset + n].reshape(a.shape).numpy().astype(np.float32)
        offset += n
    return out
