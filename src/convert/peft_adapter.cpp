#include "convert/peft_adapter.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "convert/hf_weights.h"
#include "convert/json_file.h"
#include "convert/peft_config.h"
#include "io/torch_checkpoint.h"
#include "model_dir/adapter_dir.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/model_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"

namespace qkv::convert {

namespace {

namespace fs = std::filesystem;
using model_dir::AdapterConfig;

constexpr const char* kKeyPrefix = "base_model.model.";
constexpr const char* kPeftBinFile = "adapter_model.bin";  // peft's torch.save alternative

// A qkv model directory loaded for its adapters: its hidden linear layers, the checksum of its
// weights (nn::weights_checksum), and whether Hugging Face has it as GPT-2 (hf_gpt2.h).
struct BaseModel {
  std::unique_ptr<nn::Seq2Seq> seq2seq;
  std::unique_ptr<nn::ViT> vit;
  std::unique_ptr<nn::Gpt> gpt;
  nn::LinearList linears;
  std::string checksum;
  bool gpt2 = false;

  const nn::Linear& linear(const std::string& module) const {
    for (const auto& [name, l] : linears)
      if (name == module) return *l;
    throw std::logic_error("no linear layer " + module);
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, l] : linears) out.push_back(name);
    return out;
  }
};

BaseModel load_base(const std::string& dir, const std::string& which) {
  BaseModel b;
  switch (model_dir::family(dir)) {
    case model_dir::Family::seq2seq:
      b.seq2seq = std::move(model_dir::load_translation_dir(dir, which).model);
      b.linears = b.seq2seq->linears();
      b.checksum = nn::weights_checksum(b.seq2seq->params());
      break;
    case model_dir::Family::vit:
      b.vit = model_dir::load_vit_dir(dir, which);
      b.linears = b.vit->linears();
      b.checksum = nn::weights_checksum(b.vit->params());
      break;
    case model_dir::Family::gpt:
      b.gpt = std::move(model_dir::load_language_model_dir(dir, which).model);
      b.linears = b.gpt->linears();
      b.checksum = nn::weights_checksum(b.gpt->params());
      b.gpt2 = !b.gpt->config().rope();  // as convert --to hf writes it
      break;
  }
  return b;
}

// peft's task_type for a model of base's family when the adapter names none.
std::string task_type_of(const BaseModel& base) {
  return base.gpt ? "CAUSAL_LM" : base.seq2seq ? "SEQ_2_SEQ_LM" : "";
}

// GPT-2's modules after "transformer.h.N." and the qkv modules after "model.layers.N." whose
// weights they hold (hf_gpt2.h), c_attn's row blocks in order.
constexpr std::pair<const char*, const char*> kGpt2Modules[] = {
    {"attn.c_attn", "self_attn.q_proj"}, {"attn.c_attn", "self_attn.k_proj"},
    {"attn.c_attn", "self_attn.v_proj"}, {"attn.c_proj", "self_attn.o_proj"},
    {"mlp.c_fc", "mlp.up_proj"},         {"mlp.c_proj", "mlp.down_proj"}};

// A Hugging Face module and the qkv modules whose updates are its lora_B's blocks of rows.
struct HfModule {
  std::string name;
  std::vector<std::string> blocks;
};

std::string hf_name(const std::string& qkv, bool gpt2) {
  if (!gpt2) return qkv;
  const std::string layers = "model.layers.";
  size_t dot = qkv.find('.', layers.size());
  std::string layer = qkv.substr(layers.size(), dot - layers.size()), rest = qkv.substr(dot + 1);
  for (auto [hf, ours] : kGpt2Modules)
    if (rest == ours) return "transformer.h." + layer + "." + hf;
  throw std::logic_error("GPT-2 has no module for " + qkv);
}

// The model's Hugging Face modules in its order (q, k and v are consecutive in linears()).
std::vector<HfModule> hf_modules(const BaseModel& base) {
  std::vector<HfModule> out;
  for (const auto& [name, linear] : base.linears) {
    std::string hf = hf_name(name, base.gpt2);
    if (out.empty() || out.back().name != hf) out.push_back({hf, {}});
    out.back().blocks.push_back(name);
  }
  return out;
}

std::vector<std::string> fold_note(int folded) {
  if (folded == 0) return {};
  return {"the scaling of " + std::to_string(folded) +
          " update(s) is folded into lora_B (the written lora_alpha / r cannot express it)"};
}

// Throws naming the file for peft options that read_adapter_config leaves to its readers.
void check_peft_options(const std::string& dir) {
  JsonFile c = JsonFile::read((fs::path(dir) / model_dir::kAdapterConfigFile).string());
  auto refuse = [&](const char* key, const std::string& why) {
    throw std::runtime_error(c.path() + ": \"" + key + "\": " + c.json()[key].dump() + ": " + why);
  };
  if (c.get<bool>("lora_bias", false)) refuse("lora_bias", "a bias on lora_B is not implemented");
  if (c.has("layer_replication"))
    refuse("layer_replication", "models with replicated layers are not implemented");
  if (c.has("target_parameters") && !c.json()["target_parameters"].empty())
    refuse("target_parameters", "LoRA on parameters other than Linear weights is not implemented");
}

// Throws naming the file for a target that selects none of the model's hidden linear modules
// (peft may adapt others, such as lm_head or the embeddings; qkv does not).
void check_targets(const std::string& dir, const AdapterConfig& c,
                   const std::vector<HfModule>& modules) {
  for (const auto& target : c.options.targets)
    if (std::none_of(modules.begin(), modules.end(),
                     [&](const HfModule& m) { return selects(target, m.name); })) {
      std::set<std::string> endings;
      for (const auto& m : modules) endings.insert(last_component(m.name));
      std::string known;
      for (const auto& e : endings) known += (known.empty() ? "" : ", ") + e;
      throw std::runtime_error((fs::path(dir) / model_dir::kAdapterConfigFile).string() +
                               ": target_modules: '" + target +
                               "' selects none of the model's hidden linear modules (they end "
                               "in: " +
                               known + ")");
    }
}

// peft_dir's weights: adapter_model.safetensors, else adapter_model.bin; *path is the file.
NamedTensors read_peft_weights(const std::string& dir, std::string* path, Metadata* meta) {
  *path = (fs::path(dir) / model_dir::kAdapterWeightsFile).string();
  if (fs::exists(*path)) return load_safetensors(*path, meta);
  *path = (fs::path(dir) / kPeftBinFile).string();
  if (fs::exists(*path)) return load_torch_checkpoint(*path);
  throw std::runtime_error(dir + ": no " + model_dir::kAdapterWeightsFile + " or " + kPeftBinFile);
}

// The rank components (rows of a [r, in], columns of b [rows, r]) where b is not all zero.
std::vector<int64_t> live_components(const Tensor& b) {
  std::vector<int64_t> out;
  const float* p = b.data<float>();
  for (int64_t j = 0; j < b.size(1); ++j)
    for (int64_t i = 0; i < b.size(0); ++i)
      if (p[i * b.size(1) + j] != 0.f) {
        out.push_back(j);
        break;
      }
  return out;
}

// a [r, in] and b [rows, r] cut to the rank components `keep`.
std::pair<Tensor, Tensor> keep_components(const Tensor& a, const Tensor& b,
                                          const std::vector<int64_t>& keep) {
  int64_t r = a.size(0), in = a.size(1), rows = b.size(0), k = int64_t(keep.size());
  Tensor a2 = Tensor::empty({k, in}), b2 = Tensor::empty({rows, k});
  for (int64_t j = 0; j < k; ++j) {
    std::memcpy(a2.data<float>() + j * in, a.data<float>() + keep[size_t(j)] * in,
                size_t(in) * sizeof(float));
    for (int64_t i = 0; i < rows; ++i)
      b2.data<float>()[i * k + j] = b.data<float>()[i * r + keep[size_t(j)]];
  }
  return {a2, b2};
}

// Splits the peft update (a [r, in], b [rows, r]) of module m into its blocks' qkv-keyed
// tensors: one block takes it whole; of several, each takes its rows of b and a with the rank
// components where those rows are not all zero (a block with none gets no update), unless b is
// all zero. Records each block's rank and alpha (scaling kept) in `updates`.
void split_update(const HfModule& m, const Tensor& a, const Tensor& b, const BaseModel& base,
                  double alpha, bool rslora, NamedTensors& out,
                  std::map<std::string, LoraUpdate>& updates) {
  bool all_zero = live_components(b).empty();
  int64_t row = 0, r = a.size(0);
  for (const auto& block : m.blocks) {
    int64_t rows = base.linear(block).weight.shape()[0];
    Tensor rows_b = m.blocks.size() == 1 ? b : b.slice_rows(row, row + rows);
    row += rows;
    Tensor ka = a, kb = rows_b;
    if (m.blocks.size() > 1 && !all_zero) {
      std::vector<int64_t> live = live_components(rows_b);
      if (live.empty()) continue;
      std::tie(ka, kb) = keep_components(a, rows_b, live);
    }
    updates[block] = {ka.size(0), alpha * rank_root(ka.size(0), rslora) / rank_root(r, rslora)};
    out.emplace_back(nn::lora_key(block, 'A'), ka);
    out.emplace_back(nn::lora_key(block, 'B'), kb);
  }
}

}  // namespace

std::vector<std::string> peft_adapter_from_hf(const std::string& peft_dir,
                                              const std::string& qkv_model_dir,
                                              const std::string& out_dir) {
  check_output_dir(out_dir);
  AdapterConfig peft = model_dir::read_adapter_config(peft_dir);
  check_peft_options(peft_dir);
  std::string path;
  Metadata meta;
  NamedTensors tensors = read_peft_weights(peft_dir, &path, &meta);
  BaseModel base = load_base(qkv_model_dir, "best");
  auto recorded = meta.find(model_dir::kBaseChecksumKey);
  if (recorded != meta.end() && recorded->second != base.checksum)
    throw std::runtime_error(path + ": the adapter was written for the base model '" +
                             peft.base_model + "' (weights " + recorded->second + "), not for " +
                             qkv_model_dir + " (weights " + base.checksum + ")");
  std::vector<HfModule> modules = hf_modules(base);
  check_targets(peft_dir, peft, modules);

  // Each module's (A, B) by its Hugging Face name; other keys go on for
  // lora_adapter_from_tensors to name.
  std::map<std::string, const HfModule*> by_name;
  for (const auto& m : modules) by_name[m.name] = &m;
  std::map<std::string, std::pair<Tensor, Tensor>> found;
  NamedTensors qkv_tensors;
  for (const auto& [key, t] : tensors) {
    const std::string a_end = ".lora_A.weight", b_end = ".lora_B.weight";
    bool is_a = key.ends_with(a_end), is_b = key.ends_with(b_end);
    std::string module = key.starts_with(kKeyPrefix) && (is_a || is_b)
                             ? key.substr(std::strlen(kKeyPrefix),
                                          key.size() - std::strlen(kKeyPrefix) - a_end.size())
                             : "";
    if (base.gpt2 && module.starts_with("h.")) module = "transformer." + module;  // GPT2Model's
    if (!by_name.count(module)) {
      qkv_tensors.emplace_back(key, t);
      continue;
    }
    (is_a ? found[module].first : found[module].second) = t.cast(DType::f32);
  }
  std::map<std::string, LoraUpdate> updates;
  std::map<std::string, float> scalings;  // qkv module -> the scaling peft gives it
  for (const auto& [name, ab] : found) {
    const auto& [a, b] = ab;
    const HfModule& m = *by_name.at(name);
    if (!a.defined() || !b.defined())
      throw std::runtime_error(path + ": module '" + name + "' lacks its lora_" +
                               (a.defined() ? "B" : "A") + " weight");
    int64_t in = base.linear(m.blocks[0]).weight.shape()[1], out = 0;
    for (const auto& block : m.blocks) out += base.linear(block).weight.shape()[0];
    if (a.rank() != 2 || b.rank() != 2 || a.size(1) != in || b.size(0) != out ||
        b.size(1) != a.size(0))
      throw std::runtime_error(path + ": module '" + name + "' has lora_A " + shape_str(a.shape()) +
                               " and lora_B " + shape_str(b.shape()) + "; it maps " +
                               std::to_string(in) + " inputs to " + std::to_string(out) +
                               " outputs, so they must be [r, " + std::to_string(in) + "] and [" +
                               std::to_string(out) + ", r]");
    for (const auto& block : m.blocks) scalings[block] = peft.scaling(name, a.size(0));
    split_update(m, a, b, base, alpha_of(peft, name), peft.options.rslora, qkv_tensors, updates);
  }
  nn::LoraAdapter adapter = nn::lora_adapter_from_tensors(
      qkv_tensors, base.linears,
      [&](const std::string& module, int64_t) { return scalings.at(module); }, path);

  AdapterConfig config = fit_adapter_config(peft, updates, base.names());
  config.base_model = qkv_model_dir;
  int folded = 0;
  for (auto& [module, w] : adapter.modules) {
    Tensor& b = w.b.mutable_value();
    folded += fold_scaling(b, 0, b.size(0), w.scaling, config.scaling(module, b.size(1)));
  }
  model_dir::save_adapter(out_dir, config, adapter, base.checksum);
  return fold_note(folded);
}

std::vector<std::string> peft_adapter_to_hf(const std::string& adapter_dir,
                                            const std::string& qkv_model_dir,
                                            const std::string& which, const std::string& hf_dir,
                                            const std::string& peft_dir) {
  check_output_dir(peft_dir);
  BaseModel base = load_base(qkv_model_dir, which);
  AdapterConfig read = model_dir::read_adapter_config(adapter_dir);
  nn::LoraAdapter adapter =
      model_dir::load_adapter(adapter_dir, which, base.linears, qkv_model_dir, base.checksum);

  // Each Hugging Face module's update: A stacked [R, in], B block-diagonal [out, R].
  struct Block {
    std::string module;
    int64_t begin, end;  // rows of lora_B
    float scaling;
  };
  std::vector<Block> blocks;
  nn::LoraAdapter hf;
  std::map<std::string, LoraUpdate> updates;
  std::vector<std::string> all;
  for (const HfModule& m : hf_modules(base)) {
    all.push_back(m.name);
    int64_t rank = 0, out = 0, in = base.linear(m.blocks[0]).weight.shape()[1];
    const nn::LoraWeights* first = nullptr;
    std::string first_name;
    for (const auto& block : m.blocks) {
      out += base.linear(block).weight.shape()[0];
      if (!adapter.modules.count(block)) continue;
      rank += adapter.modules.at(block).a.shape()[0];
      if (!first) first = &adapter.modules.at(block), first_name = block;
    }
    if (!first) continue;
    Tensor a = Tensor::zeros({rank, in}), b = Tensor::zeros({out, rank});
    int64_t row = 0, col = 0;
    for (const auto& block : m.blocks) {
      int64_t rows = base.linear(block).weight.shape()[0];
      if (adapter.modules.count(block)) {
        const nn::LoraWeights& w = adapter.modules.at(block);
        const Tensor &wa = w.a.value(), &wb = w.b.value();
        int64_t r = wa.size(0);
        std::memcpy(a.data<float>() + col * in, wa.data<float>(), wa.nbytes());
        for (int64_t i = 0; i < rows; ++i)
          std::memcpy(b.data<float>() + (row + i) * rank + col, wb.data<float>() + i * r,
                      size_t(r) * sizeof(float));
        blocks.push_back({m.name, row, row + rows, w.scaling});
        col += r;
      }
      row += rows;
    }
    bool rslora = read.options.rslora;
    int64_t first_rank = first->a.shape()[0];
    updates[m.name] = {
        rank, alpha_of(read, first_name) * rank_root(rank, rslora) / rank_root(first_rank, rslora)};
    hf.modules[m.name] = {Var(a), Var(b), 0.f, 0.f};
  }

  AdapterConfig config = fit_adapter_config(read, updates, all);
  config.base_model = hf_dir;
  if (config.task_type.empty()) config.task_type = task_type_of(base);
  int folded = 0;
  for (const Block& blk : blocks) {
    Tensor& b = hf.modules.at(blk.module).b.mutable_value();
    folded +=
        fold_scaling(b, blk.begin, blk.end, blk.scaling, config.scaling(blk.module, b.size(1)));
  }
  model_dir::save_adapter(peft_dir, config, hf, base.checksum);
  return fold_note(folded);
}

}  // namespace qkv::convert
