// A torch.nn.Transformer translation model -> a qkv model directory.
//
// The weights file is the model's state_dict, as torch.save(model.state_dict(), "model.pt")
// writes it (io/torch_checkpoint.h) or as a safetensors file, with these names (d = d-model,
// V = vocab):
//   embedding.weight                [V, d]   token embeddings, shared by source and target
//   generator.weight                [V, d]   output projection (absent: tied to embedding)
//   generator.bias                  [V]      optional
//   transformer.encoder.layers.N.self_attn.in_proj_weight [3d, d], .in_proj_bias [3d],
//     .self_attn.out_proj.{weight,bias}, .linear1.*, .linear2.*, .norm1.*, .norm2.*
//   transformer.decoder.layers.N.self_attn.*, .multihead_attn.*, .linear1.*, .linear2.*,
//     .norm1.*, .norm2.*, .norm3.*
//   transformer.encoder.norm.*, transformer.decoder.norm.*   (nn.Transformer always has them)
// i.e. a module with fields `embedding` (nn.Embedding), `transformer` (nn.Transformer with
// batch_first either way) and `generator` (nn.Linear). The "transformer." prefix may be absent.
// The config file is a qkv config.yaml (model-type: seq2seq, vocab-size, d-model, heads, d-ff,
// encoder-layers, decoder-layers, activation, pre-norm (norm_first), scale-embeddings,
// position-layout, ...); the stacks' final norms set final-norm. The tokenizer is a
// SentencePiece model with qkv's special ids (pad 0, unk 1, bos 2, eos 3).
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// `state_dict` names the entry that holds the weights in a torch.save checkpoint of several parts
// ({"model": ..., "optimizer": ...}); empty: the file's dict, or its one dict of tensors.
// Returns notes for the user; throws std::runtime_error naming the file and what is missing,
// unexpected or wrongly shaped.
std::vector<std::string> seq2seq_from_torch(const std::string& weights,
                                            const std::string& config_yaml,
                                            const std::string& spm_model,
                                            const std::string& qkv_dir,
                                            const std::string& state_dict = "");

}  // namespace qkv::convert
