// Hugging Face MarianMTModel folders <-> qkv translation model directories.
//
// A MarianMTModel is qkv's Seq2Seq with options: post-norm, sinusoidal positions in "halves"
// layout (not saved in the checkpoint), embeddings scaled or not (scale_embedding), its
// activation, a final logits bias, <eos> after every source sentence and <pad> as the decoder's
// first token. Its tokenizer (source.spm, target.spm, vocab.json) becomes a vocabulary-mapped
// data::Tokenizer. Parameter names are the same on both sides.
//
// qkv models with interleaved sinusoids are written with their residual dimensions permuted so
// that Marian's halves table is exact (every weight touching the residual stream is permuted
// alike, which leaves the outputs unchanged); config.json then carries
// "qkv_position_layout": "interleaved" and reading it back undoes the permutation, so
// qkv -> HF -> qkv gives the same weights bit for bit.
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// Returns notes for the user (what was assumed or cannot be represented exactly). Throws
// std::runtime_error naming the file and what is missing, unsupported or wrongly shaped.
std::vector<std::string> marian_from_hf(const std::string& hf_dir, const std::string& qkv_dir);
// which: the checkpoint of the qkv directory, "best" or "last".
std::vector<std::string> marian_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                      const std::string& which = "best");

// The permutation that takes interleaved sinusoid columns to the halves layout:
// halves[:, j] = interleaved[:, perm[j]].
std::vector<int64_t> halves_from_interleaved(int64_t d);

}  // namespace qkv::convert
