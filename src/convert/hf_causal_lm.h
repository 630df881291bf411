// What the GPT-2 and Llama conversions (hf_gpt2.h, hf_llama.h) share: the tokenizer between a
// Hugging Face folder and a qkv language model directory, the special ids, and the steps that
// read and write the two kinds of folder around each architecture's own mapping.
//
// Tokenizers (data/lm_tokenizer.h), both ways, files copied byte for byte:
//   byte-bpe       vocab.json + merges.txt (GPT2Tokenizer)
//   byte-bpe       tokenizer.json (PreTrainedTokenizerFast: Llama 3's only file)
//   sentencepiece  tokenizer.model (LlamaTokenizer) <-> spm.model
// The architecture's own kind is taken where a folder has several (Llama: tokenizer.model).
// tokenizer_config.json's add_bos_token, bos_token and eos_token (a string, or {"content": ...})
// give tokenizer.yaml's add-bos, bos-token and eos-token; without them the tokenizer class's
// defaults hold: GPT2Tokenizer adds no bos and has <|endoftext|> as bos and eos (when vocab.json
// has it), LlamaTokenizer adds <s> and ends with </s>, and a tokenizer.json adds the token its
// post-processor puts first (Llama 3's <|begin_of_text|>) and has no eos. config.yaml's bos-id
// and eos-id are the tokenizer's ids of those pieces; its stop-ids are the other ids at which
// transformers' generate stops: generation_config.json's eos_token_id (an id or a list) where it
// has one, else config.json's. Back to Hugging Face, both files list eos-id and the stop-ids.
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "convert/hf_weights.h"
#include "convert/json_file.h"
#include "data/lm_tokenizer.h"
#include "model_dir/gpt_dir.h"
#include "nn/gpt.h"

namespace qkv::convert {

// The qkv parameters (by qkv name) taken from a Hugging Face checkpoint for `model`.
using WeightsFromHf = std::function<NamedTensors(CheckpointTensors& hf, const nn::Gpt& model)>;

// The end of every conversion from Hugging Face, once config.json has given `config` (checked
// for its shape): the tokenizer of hf_dir (`tokenizer_type`'s files first: "byte-bpe" or
// "sentencepiece") into qkv_dir with the special ids it gives, config.json's bos_token_id
// compared with them (a note when they differ), the stop ids (a note when they leave out the
// tokenizer's eos, where qkv stops too), the checkpoint's tensors mapped by
// `weights` (every tensor must be used), then config.yaml and model.safetensors. Throws
// std::runtime_error naming the file for a missing tokenizer file or tensor. qkv_dir must be new
// or empty (the caller's check_output_dir); it is removed again when anything fails.
std::vector<std::string> lm_from_hf(const std::string& hf_dir, const JsonFile& cfg,
                                    nn::GptConfig config, const std::string& tokenizer_type,
                                    const WeightsFromHf& weights, const std::string& qkv_dir,
                                    std::vector<std::string> notes);

// Writes a Hugging Face folder for the language model `m` read from qkv_dir: config.json
// (`config`), generation_config.json, the tokenizer's files with tokenizer_config.json and
// special_tokens_map.json, and model.safetensors (`weights`, by Hugging Face's names). Throws
// std::runtime_error for a tokenizer Hugging Face has no class for (chars).
void write_hf_lm_folder(const std::string& qkv_dir, const model_dir::LanguageModel& m,
                        const std::string& hf_dir, const nlohmann::ordered_json& config,
                        const NamedTensors& weights);

// config.json's and generation_config.json's eos_token_id for `c`: eos-id, or a list of it and
// the stop-ids (null for neither).
nlohmann::ordered_json eos_token_ids(const nn::GptConfig& c);

// Throws std::runtime_error "<where>: <architecture> needs <option> <allowed[0]> (or ...), not
// <actual>" unless actual is one of `allowed`.
void require_option(const std::string& where, const std::string& architecture,
                    const std::string& option, const std::string& actual,
                    const std::vector<std::string>& allowed);

// `value` as the double with the float's shortest decimal form (1e-5f as 1e-05, not
// 9.99999974737875e-06), which reads back as the same float.
double json_float(float value);

}  // namespace qkv::convert
