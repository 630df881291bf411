#include "support/hf_gpt_folders.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "convert/hf_gpt2.h"
#include "convert/hf_llama.h"
#include "data/corpus.h"
#include "data/lm_tokenizer.h"
#include "support/data_files.h"
#include "support/python_script.h"

namespace qkv::test {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::string> english_lines(size_t n) {
  auto c = data::read_tsv(QKV_SOURCE_DIR "/data/bible.es-en.dev.tsv.xz");
  return {c.tgt.begin(), c.tgt.begin() + int64_t(std::min(n, c.tgt.size()))};
}

const std::string& spm_dir() {
  static ScratchDir dir("hf_gpt_spm");
  static std::string path = [] {
    data::LmTokenizerOptions o;
    o.vocab_size = kSpmVocab;
    auto tok = data::LmTokenizer::train("sentencepiece", english_lines(400), o);
    tok->save(dir.file("tok"));
    return dir.file("tok");
  }();
  return path;
}

nlohmann::json gpt2_config() {
  return {{"n_embd", 32},
          {"n_layer", 2},
          {"n_head", 4},
          {"n_positions", 64},
          {"n_inner", nullptr},
          {"activation_function", "gelu_new"},
          {"layer_norm_epsilon", 1e-5},
          {"resid_pdrop", 0.0},
          {"tie_word_embeddings", true}};
}

nlohmann::json llama_config() {
  return {
      {"vocab_size", kSpmVocab},      {"hidden_size", 32},        {"intermediate_size", 64},
      {"num_hidden_layers", 2},       {"num_attention_heads", 4}, {"num_key_value_heads", 2},
      {"rms_norm_eps", 1e-6},         {"rope_theta", 10000.0},    {"max_position_embeddings", 64},
      {"tie_word_embeddings", false}, {"attention_bias", false},  {"mlp_bias", false},
      {"hidden_act", "silu"},         {"bos_token_id", 1},        {"eos_token_id", 2}};
}

void PrintTo(const GptCase& c, std::ostream* os) {
  *os << c.name;
}

void make_folder(const std::string& hf, const GptCase& c, int seed) {
  json spec = {{"arch", c.arch}, {"seed", seed}, {"format", "safetensors"}};
  spec["config"] = c.arch == "gpt2" ? gpt2_config() : llama_config();
  spec["config"].update(c.config);
  spec.update(c.spec);
  if (c.arch == "llama") spec["tokenizer_model"] = spm_dir() + "/spm.model";
  fs::create_directories(hf);
  std::ofstream(hf + ".spec.json") << spec.dump();
  run_python_script("hf_gpt_fixtures.py", "make " + hf + " " + hf + ".spec.json");
}

Converter from_hf(const std::string& arch) {
  return arch == "gpt2" ? convert::gpt2_from_hf : convert::llama_from_hf;
}

}  // namespace qkv::test
