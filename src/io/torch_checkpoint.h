// Reading checkpoints that torch.save wrote (pytorch_model.bin, *.pt, *.pth), without Python:
// its ZIP format (PyTorch 1.6 and later: ARCHIVE/data.pkl, and ARCHIVE/data/KEY per storage)
// and the legacy one (`_use_new_zipfile_serialization=False`: a magic number, version and system
// pickles, the data pickle, the list of storage keys, then each storage as an int64 element
// count and its bytes).
//
// No code from the file runs. The data pickle may only build dicts, lists, tuples, numbers,
// strings and tensors: the globals collections.OrderedDict, torch._utils._rebuild_tensor(_v2),
// torch._utils._rebuild_parameter(_with_state) and the torch.*Storage types; calling anything
// else is refused with an error naming it. Every offset, size and stride is checked against
// the file, ZIP entries against their CRC-32.
#pragma once
#include <string>

#include "io/safetensors.h"

namespace qkv {

// The tensors of a state dict (name -> tensor: model.state_dict(), Hugging Face's
// pytorch_model.bin), in the dict's order, each contiguous on the CPU. dtypes: float32, float16,
// bfloat16, int64, int32 and uint8 as they are, bool as u8, float64 rounded to f32 (qkv has no
// f64). Tensors that share a storage (tied weights, views) come out as copies.
// The state dict is the file's dict when that holds only tensors. In a checkpoint of several
// parts ({"model": state_dict, "optimizer": ..., "epoch": 3}) it is the entry named `entry`, or
// with `entry` empty the one entry that is a dict of tensors only; `*picked` (if given) is set
// to the entry read ("" for the file's dict).
// Throws std::runtime_error naming the file and the problem: no or several candidate state
// dicts (naming them), a storage type qkv lacks, a truncated or corrupt file.
NamedTensors load_torch_checkpoint(const std::string& path, const std::string& entry = "",
                                   std::string* picked = nullptr);

enum class CheckpointFormat { torch, safetensors, unknown };
// What the first bytes of `path` say: torch.save's (a ZIP archive, or a pickle), safetensors'
// (an 8-byte header length, then '{'), or neither (also for a file that cannot be read).
CheckpointFormat sniff_checkpoint_format(const std::string& path);

}  // namespace qkv
