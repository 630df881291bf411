// qkv convert: models from Hugging Face and PyTorch into qkv model directories, and back.
//   qkv convert --from hf HF_DIR --to QKV_DIR      (MarianMTModel, ViTForImageClassification,
//                                                   GPT2LMHeadModel, LlamaForCausalLM,
//                                                   MixtralForCausalLM, timm vit_*)
//   qkv convert --from torch FILE.pt --config FILE.yaml --spm spm.model --to QKV_DIR
//                                                  (or FILE.safetensors; --state-dict KEY)
//   qkv convert --from qkv QKV_DIR --to hf HF_DIR
// With --adapter IN --adapter-out OUT (hf and qkv), a LoRA adapter of the model goes along:
//   --from hf: IN a peft folder of HF_DIR's model, OUT a qkv adapter directory of QKV_DIR
//   --from qkv: IN a qkv adapter directory of QKV_DIR, OUT a peft folder of HF_DIR
#include <filesystem>
#include <iostream>
#include <map>

#include "commands.h"
#include "convert/hf_gpt2.h"
#include "convert/hf_llama.h"
#include "convert/hf_marian.h"
#include "convert/hf_mixtral.h"
#include "convert/hf_vit.h"
#include "convert/hf_weights.h"
#include "convert/json_file.h"
#include "convert/peft_adapter.h"
#include "convert/timm_vit.h"
#include "convert/torch_transformer.h"
#include "model_dir/adapter_dir.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/model_dir.h"

namespace qkv::cli {

namespace {

struct ConvertArgs {
  std::vector<std::string> from, to;
  std::string config, spm, state_dict, checkpoint = "best";
  std::string adapter, adapter_out;
};

using Converter = std::vector<std::string> (*)(const std::string&, const std::string&);

// The converter for config.json's first architecture qkv knows, else for its model_type.
std::vector<std::string> from_hf(const std::string& dir, const std::string& out) {
  if (convert::is_timm_folder(dir)) return convert::vit_from_timm(dir, out);
  convert::JsonFile cfg = convert::JsonFile::read(dir + "/config.json");
  static const std::map<std::string, Converter> by_architecture = {
      {"MarianMTModel", convert::marian_from_hf},
      {"ViTForImageClassification", convert::vit_from_hf},
      {"GPT2LMHeadModel", convert::gpt2_from_hf},
      {"GPT2Model", convert::gpt2_from_hf},
      {"LlamaForCausalLM", convert::llama_from_hf},
      {"MixtralForCausalLM", convert::mixtral_from_hf}};
  static const std::map<std::string, Converter> by_model_type = {
      {"marian", convert::marian_from_hf},
      {"vit", convert::vit_from_hf},
      {"gpt2", convert::gpt2_from_hf},
      {"llama", convert::llama_from_hf},
      {"mixtral", convert::mixtral_from_hf}};
  for (const auto& arch : cfg.get<std::vector<std::string>>("architectures", {}))
    if (by_architecture.count(arch)) return by_architecture.at(arch)(dir, out);
  std::string type = cfg.get<std::string>("model_type", "");
  if (by_model_type.count(type)) return by_model_type.at(type)(dir, out);
  throw std::runtime_error(cfg.path() + ": model_type \"" + type +
                           "\" is not supported (qkv converts marian (MarianMTModel), vit "
                           "(ViTForImageClassification), gpt2 (GPT2LMHeadModel), llama "
                           "(LlamaForCausalLM), mixtral (MixtralForCausalLM) and timm's vit_* "
                           "models)");
}

// A gpt model directory as the architecture its options make: RoPE with experts ->
// MixtralForCausalLM, RoPE -> LlamaForCausalLM, learned positions -> GPT2LMHeadModel (each
// refuses, naming it, an option it cannot express).
std::vector<std::string> gpt_to_hf(const std::string& dir, const std::string& out,
                                   const std::string& which) {
  nn::GptConfig c = model_dir::read_gpt_config(model_dir::existing_config_path(dir));
  if (!c.rope()) return convert::gpt2_to_hf(dir, out, which);
  return c.moe.enabled() ? convert::mixtral_to_hf(dir, out, which)
                         : convert::llama_to_hf(dir, out, which);
}

std::vector<std::string> convert_model(const ConvertArgs& a) {
  const std::string& format = a.from[0];
  const std::string& source = a.from[1];
  std::string to_format = a.to.size() == 2 ? a.to[0] : "qkv";
  const std::string& target = a.to.back();
  auto need_to = [&](const char* want) {
    if (to_format != want)
      throw std::invalid_argument("--from " + format + " converts to " + want + ", not " +
                                  to_format);
  };
  if (format == "hf") {
    need_to("qkv");
    return from_hf(source, target);
  }
  if (format == "torch") {
    need_to("qkv");
    if (a.config.empty() || a.spm.empty())
      throw std::invalid_argument("--from torch needs --config FILE.yaml and --spm FILE.model");
    return convert::seq2seq_from_torch(source, a.config, a.spm, target, a.state_dict);
  }
  if (format == "qkv") {
    need_to("hf");
    switch (model_dir::family(source)) {
      case model_dir::Family::seq2seq:
        return convert::marian_to_hf(source, target, a.checkpoint);
      case model_dir::Family::vit:
        return convert::vit_to_hf(source, target, a.checkpoint);
      case model_dir::Family::gpt:
        return gpt_to_hf(source, target, a.checkpoint);
    }
  }
  throw std::invalid_argument("--from must be hf, torch or qkv, not '" + format + "'");
}

// The model, then its adapter when --adapter asks for one; a failed adapter takes the model
// directory just written with it, so that nothing half-done stays.
std::vector<std::string> run(const ConvertArgs& a) {
  if (a.adapter.empty() != a.adapter_out.empty())
    throw std::invalid_argument("--adapter DIR and --adapter-out DIR go together");
  if (a.adapter.empty()) return convert_model(a);
  if (a.from[0] == "torch") throw std::invalid_argument("--adapter: only with --from hf or qkv");
  convert::check_output_dir(a.adapter_out);
  model_dir::read_adapter_config(a.adapter);  // a bad adapter stops before the model is written
  std::vector<std::string> notes = convert_model(a);
  const std::string& model = a.from[0] == "hf" ? a.to.back() : a.from[1];
  try {
    std::vector<std::string> more =
        a.from[0] == "hf" ? convert::peft_adapter_from_hf(a.adapter, model, a.adapter_out)
                          : convert::peft_adapter_to_hf(a.adapter, model, a.checkpoint, a.to.back(),
                                                        a.adapter_out);
    notes.insert(notes.end(), more.begin(), more.end());
  } catch (...) {
    std::filesystem::remove_all(a.to.back());
    throw;
  }
  return notes;
}

}  // namespace

Command add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert", "Convert Hugging Face / PyTorch models to qkv model directories and back");
  auto a = std::make_shared<ConvertArgs>();
  cmd->add_option("--from", a->from,
                  "FORMAT PATH: hf DIR, torch FILE (.pt or .safetensors) or qkv DIR")
      ->required()
      ->expected(2);
  cmd->add_option("--to", a->to, "[FORMAT] DIR: the output directory (format qkv or hf)")
      ->required()
      ->expected(1, 2);
  cmd->add_option("--config", a->config, "--from torch: the model's qkv config.yaml");
  cmd->add_option("--spm", a->spm, "--from torch: its SentencePiece model");
  cmd->add_option("--state-dict", a->state_dict,
                  "--from torch: the entry of a checkpoint {\"model\": ..., \"optimizer\": ...} "
                  "that holds the weights (default: the one dict of tensors)");
  cmd->add_option("--checkpoint", a->checkpoint, "--from qkv: best or last (also of --adapter)")
      ->check(CLI::IsMember({"best", "last"}));
  cmd->add_option("--adapter", a->adapter,
                  "a LoRA adapter of the model to convert too: --from hf a peft folder "
                  "(adapter_config.json, adapter_model.safetensors or .bin), --from qkv a qkv "
                  "adapter directory; needs --adapter-out");
  cmd->add_option("--adapter-out", a->adapter_out,
                  "where the converted adapter goes: --from hf a qkv adapter directory of the "
                  "--to model, --from qkv a peft folder of the --to hf folder");
  return [a]() {
    for (const auto& note : run(*a)) std::cerr << "qkv convert: note: " << note << "\n";
    std::cerr << "qkv convert: wrote " << a->to.back() << "\n";
    if (!a->adapter_out.empty()) std::cerr << "qkv convert: wrote " << a->adapter_out << "\n";
    return 0;
  };
}

}  // namespace qkv::cli
