// Random GPT-2 and Llama models in Hugging Face's layout (tests/python/hf_gpt_fixtures.py), for
// the tests of qkv convert on such folders: a SentencePiece tokenizer for Llama, the configs the
// cases start from, and the converter of each architecture.
#pragma once
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace qkv::test {

constexpr int kSpmVocab = 320;  // the SentencePiece model's vocabulary

// The first n English sentences of the bundled dev split.
std::vector<std::string> english_lines(size_t n);
// A SentencePiece BPE model with byte fallback and Llama's ids (<unk> 0, <s> 1, </s> 2),
// trained once on the dev set's English side: the directory data::LmTokenizer::save wrote.
const std::string& spm_dir();
nlohmann::json gpt2_config();   // a small GPT2LMHeadModel's config.json
nlohmann::json llama_config();  // a small LlamaForCausalLM's, grouped-query

struct GptCase {
  std::string name;
  std::string arch;       // gpt2 or llama
  nlohmann::json config;  // over gpt2_config() / llama_config()
  nlohmann::json spec;    // format, prefix, buffers (hf_gpt_fixtures.py)
};

void PrintTo(const GptCase& c, std::ostream* os);
// Writes the Hugging Face folder of `c` into hf (with expected.safetensors).
void make_folder(const std::string& hf, const GptCase& c, int seed);

using Converter = std::vector<std::string> (*)(const std::string&, const std::string&);
Converter from_hf(const std::string& arch);  // gpt2 or llama

}  // namespace qkv::test
