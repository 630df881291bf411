// Training that starts from a trained model (init-from, train/loop.h), shared by the trainers:
//   - full fine-tuning (lora-rank 0): the run's model directory gets the base's config.yaml and
//     tokenizer (the trainer writes them) and its weights start as the base's best;
//   - LoRA (lora-rank > 0): the base is frozen and a new adapter on its targeted linear layers
//     is what the run trains and publishes (adapter_config.json, adapter_model.safetensors and
//     adapter_model.best.safetensors, model_dir/adapter_dir.h). That model directory holds no
//     config, tokenizer or model weights: the base stays in its own directory, untouched.
// The family-specific part (loading the base, its default targets) stays in each trainer.
#pragma once
#include <string>
#include <vector>

#include "model_dir/model_dir.h"
#include "nn/lora.h"
#include "train/checkpoint.h"
#include "train/loop.h"
#include "train/train_log.h"

namespace qkv::train {

// Before anything is written: throws std::runtime_error unless config.init_from is a model
// directory of `family` (naming it and its model-type otherwise) other than model_dir.
void check_init_from(const LoopConfig& config, const std::string& model_dir,
                     model_dir::Family family);

// Logs that the run starts from init-from's model: its shape, tokenizer and best weights (the
// run's shape and vocabulary options are ignored).
void note_init_from(const LoopConfig& config, TrainLog& log);

// A LoRA run: its adapter, attached to the frozen base.
struct LoraRun {
  nn::LoraAdapter adapter;
  std::string base_checksum;  // nn::weights_checksum of the base's parameters
  // The adapter's files, recording base_checksum.
  WeightFiles files() const;
};

// Before anything is written: freezes `base`, checks that the adapter model_dir holds already
// (a run being resumed) was trained on these weights (std::runtime_error naming the base it
// records and init-from otherwise), and attaches a new adapter, initialised from config.seed,
// to the modules of `linears` that config.lora.targets name (`default_targets` when none).
// Throws std::invalid_argument naming an unknown target or a rank a layer cannot have.
LoraRun start_lora(const LoopConfig& config, const std::string& model_dir,
                   const nn::ParamList& base, const nn::LinearList& linears,
                   const std::vector<std::string>& default_targets);

// Writes model_dir's adapter_config.json (task_type: peft's, or "" for none) and logs how many
// of the model's parameters train.
void publish_lora(const LoopConfig& config, const std::string& model_dir, const LoraRun& run,
                  const std::string& task_type, int64_t base_parameters, TrainLog& log);

}  // namespace qkv::train
