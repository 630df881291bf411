// Training checkpoints, safe against a kill at any moment.
//
// A model directory (model_dir/model_dir.h) holds what a user needs (config.yaml, spm.model,
// model.safetensors, and model.best.safetensors once validated; a LoRA run its adapter files) and,
// under checkpoint/, what resuming needs:
//   checkpoint/state-<update>/{model,optimizer}.safetensors, progress.json, and
//                              average.safetensors when the run averages its weights (ema-decay)
//   checkpoint/latest          the name of the newest complete state folder
// A state is written into a temporary folder, renamed into place, and only then does `latest`
// (replaced atomically) point at it; older states are removed afterwards. A run killed at any
// point leaves `latest` naming a complete state.
#pragma once
#include <limits>
#include <optional>
#include <string>

#include "model_dir/model_dir.h"
#include "nn/params.h"
#include "optim/optimizer.h"

namespace qkv::train {

struct Progress {
  int64_t epoch = 0;                         // epochs completed (the 0-based epoch being trained)
  int64_t batch_in_epoch = 0;                // batches of this epoch already consumed
  int64_t update = 0;                        // optimizer updates done
  int64_t sentences = 0, target_tokens = 0;  // examples and loss items (images for a classifier)
  uint64_t rng_seed = 0;                     // of the dropout streams
  int64_t batches = 0;                       // batches trained on, over all ranks
  int64_t ranks = 1;                         // of the data-parallel run that saved it
  // The best validation score so far (BLEU, accuracy, minus a language model's loss); the
  // lowest double before the first, so that any score is better.
  double best_score = std::numeric_limits<double>::lowest();
  int64_t validations_without_improvement = 0;
  double elapsed_s = 0;  // training time over all runs
  // The updates the learning-rate schedule decays over, as the runs so far fixed it with
  // max-time (which measures it on the clock); 0 when none did.
  int64_t schedule_updates = 0;
};

// The files a run's weights are published under in the model directory: a model's
// (model.safetensors, model.best.safetensors) or a LoRA adapter's
// (adapter_model.safetensors, adapter_model.best.safetensors, model_dir/adapter_dir.h), with
// `metadata` added to theirs.
struct WeightFiles {
  std::string last = model_dir::kWeightsFile, best = model_dir::kBestWeightsFile;
  Metadata metadata;
};

// Publishes `average` (when given) as the model's weights (files.last), else the parameters.
void save_checkpoint(const std::string& model_dir, const nn::ParamList& params,
                     const optim::Adam& adam, const Progress& progress,
                     const WeightFiles& files = {}, const NamedTensors* average = nullptr);
// Loads the newest complete state into params and adam; nullopt when there is none.
std::optional<Progress> load_checkpoint(const std::string& model_dir, const nn::ParamList& params,
                                        optim::Adam& adam);
// The weight average of the newest complete state; nullopt when it has none.
std::optional<NamedTensors> load_checkpoint_average(const std::string& model_dir);
// model.best.safetensors (atomically): `weights`, the parameters or their average.
void save_best(const std::string& model_dir, const NamedTensors& weights, const Progress& progress,
               const WeightFiles& files = {});

// Throws std::runtime_error when model_dir holds a model.safetensors or adapter_model.safetensors
// without a training checkpoint (a converted model, or one whose checkpoint/ was removed):
// training there would overwrite it. A LoRA run (`lora`) also refuses a directory holding a
// model (config.yaml), and another run one holding an adapter (adapter_config.json).
void check_no_foreign_model(const std::string& model_dir, bool lora = false);

}  // namespace qkv::train
