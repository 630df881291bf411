// qkv merge-lora: a base model with a LoRA adapter folded into its weights, written as an
// ordinary model directory (the base and the adapter stay as they are).
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "model_dir/adapter_dir.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"

namespace qkv::cli {

namespace {
namespace fs = std::filesystem;

struct MergeArgs {
  std::string model_dir, adapter, to, checkpoint = "best";
};

// --to must be a new place: neither the base nor a directory that holds a model already.
void check_destination(const MergeArgs& a) {
  std::error_code error;
  if (fs::exists(a.to) && fs::equivalent(a.to, a.model_dir, error))
    throw std::invalid_argument("--to " + a.to + " is the base model directory " + a.model_dir +
                                "; merge into a new directory");
  for (const char* file :
       {model_dir::kConfigFile, model_dir::kWeightsFile, model_dir::kBestWeightsFile})
    if (fs::exists(fs::path(a.to) / file))
      throw std::invalid_argument("--to " + a.to + " already holds a model (" + file +
                                  "); give a new directory");
}

// Loads the adapter for the base whose hidden linears are `linears` and folds it into them.
void merge(const MergeArgs& a, const nn::LinearList& linears, const nn::ParamList& params) {
  nn::LoraAdapter adapter = model_dir::load_adapter(a.adapter, a.checkpoint, linears, a.model_dir,
                                                    nn::weights_checksum(params));
  nn::attach_lora(linears, adapter);
  nn::merge_lora(linears);
  std::cerr << "qkv merge-lora: note: adapter " << a.adapter << " (" << adapter.modules.size()
            << " modules) merged into the weights of " << a.model_dir << "\n";
}
}  // namespace

Command add_merge_lora(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "merge-lora",
      "Fold a LoRA adapter into its base model's weights (W += scaling B A) and write the result "
      "as an ordinary model directory, which every command runs without --adapter.\n"
      "  qkv merge-lora --model-dir BASE --adapter DIR --to OUT\n"
      "BASE and DIR are not changed; OUT must be a new directory.");
  auto a = std::make_shared<MergeArgs>();
  cmd->add_option("--model-dir", a->model_dir, "the base model directory (any family)")->required();
  cmd->add_option("--adapter", a->adapter, "the LoRA adapter directory of that base")->required();
  cmd->add_option("--to", a->to, "the merged model's new directory")->required();
  cmd->add_option("--checkpoint", a->checkpoint, "best or last: of the base and of the adapter");
  return [a]() {
    check_destination(*a);
    switch (model_dir::family(a->model_dir)) {
      case model_dir::Family::seq2seq: {
        model_dir::TranslationModel m =
            model_dir::load_translation_dir(a->model_dir, a->checkpoint);
        merge(*a, m.model->linears(), m.model->params());
        model_dir::save_translation_dir(a->to, m.model->config(), *m.tokenizer, m.model->params());
        break;
      }
      case model_dir::Family::gpt: {
        model_dir::LanguageModel m =
            model_dir::load_language_model_dir(a->model_dir, a->checkpoint);
        merge(*a, m.model->linears(), m.model->params());
        model_dir::save_gpt_dir(a->to, m.model->config(), m.model->params());
        m.tokenizer->save(a->to);
        break;
      }
      case model_dir::Family::vit: {
        std::unique_ptr<nn::ViT> model = model_dir::load_vit_dir(a->model_dir, a->checkpoint);
        merge(*a, model->linears(), model->params());
        model_dir::save_vit_dir(a->to, model->config(), model->params());
        break;
      }
    }
    std::cerr << "qkv merge-lora: wrote " << a->to << "\n";
    return 0;
  };
}

}  // namespace qkv::cli
