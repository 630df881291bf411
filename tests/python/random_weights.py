"""Random weights for the reference models' folders, into a dict of name -> ndarray: linear
layers with weights of std 1/sqrt(fan-in) and biases of std 0.1, LayerNorms near (1, 0)."""
import math


def linear(w, rng, name, out_dim, in_dim):
    w[name + ".weight"] = rng.normal(0, 1 / math.sqrt(in_dim), (out_dim, in_dim))
    w[name + ".bias"] = rng.normal(0, 0.1, (out_dim,))


def layer_norm(w, rng, name, dim):
    w[name + ".weight"] = 1 + rng.normal(0, 0.1, (dim,))
    w[name + ".bias"] = rng.normal(0, 0.1, (dim,))
