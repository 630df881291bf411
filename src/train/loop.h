// What every qkv training run shares, whatever its model and data:
//   - the options of optimisation, stopping and reporting (LoopConfig; each trainer's config
//     derives from it, so the keys are the same for every model),
//   - the optimizer (Adam/AdamW) and learning-rate schedule, and the weights' moving average
//     (ema-decay) that validation and the published weight files use,
//   - resuming from the model directory's newest checkpoint,
//   - one update from the gradients of one or more backward passes: normalisation, clipping,
//     skipping an update whose loss or gradient is not finite,
//   - the log line every disp-freq updates, validation bookkeeping (model.best.safetensors,
//     early stopping) and checkpoints every save-freq updates.
//   - data-parallel runs over MPI (train/data_parallel.h): which rank takes which batch, the
//     gradient allreduce, the same decisions on every rank, rank 0 alone writing.
// A trainer reads its data, builds its model and runs:
//   TrainingLoop loop(config, model_dir, params, log);
//   while (!loop.stopping()) {
//     loop.for_own_batches(data, [&](Batch b) {  (this rank's share of the update's batches)
//       loss_sum += loop.forward_backward(items, [&] { return ... batch loss ...; });
//     });
//     loop.update(loss_sum, count, examples, data_position);
//     if (loop.validation_due()) {
//       auto averaged = loop.evaluation_weights();
//       loop.validated(stats, score);
//     }
//     loop.checkpoint_if_due();
//   }
//   loop.finish();
#pragma once
#include <chrono>
#include <optional>
#include <string>

#include "autograd/tape.h"
#include "config/options.h"
#include "io/atomic_file.h"
#include "model_dir/model_dir.h"
#include "nn/layers.h"
#include "nn/lora.h"
#include "nn/moe.h"
#include "ops/precision.h"
#include "optim/optimizer.h"
#include "optim/weight_average.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/train_log.h"

namespace qkv::train {

struct LoopConfig {
  // Stopping.
  int64_t max_updates = 0, max_epochs = 0;
  double max_time = 0;  // minutes; 0 = no limit
  int64_t early_stopping = 10;
  // Optimisation.
  std::string optimizer = "adam", lr_schedule = "inverse-sqrt";
  double learning_rate = 7e-4, weight_decay = 0, clip_norm = 1.0;
  double beta1 = 0.9, beta2 = 0.98, epsilon = 1e-9;
  // > 0: validate and publish an exponential moving average of the weights
  // (optim/weight_average.h).
  double ema_decay = 0;
  int64_t warmup_steps = 4000;
  // Batches per update on each rank (their gradients summed), and the size of the gradient
  // buckets summed over the ranks of a data-parallel run.
  int64_t accumulate = 1;
  double allreduce_bucket_mb = 25;
  float label_smoothing = 0.1f, dropout = 0.1f;
  // Reporting.
  int64_t disp_freq = 50, valid_freq = 500, save_freq = 500;
  int64_t seed = 1, threads = 0;
  std::string device = "cpu";
  // Matrix products: f32, or bf16 operands with f32 accumulation (ops/precision.h); weights,
  // gradients and Adam state stay f32 either way. On the cpu bf16 is fast with AVX512_BF16 only;
  // auto is bf16 where it is fast (cuda, or such a CPU), else f32.
  std::string precision = "f32";
  // Fine-tuning (train/fine_tune.h): the trained model directory a run starts from, and a LoRA
  // adapter trained on it instead of the whole model (lora.rank > 0).
  std::string init_from;
  nn::LoraOptions lora;
  // How Mixture-of-Experts routers are trained (models with moe-experts > 0).
  nn::MoeLossOptions moe_loss;

  // Registers these options (kebab-case keys) on `options`.
  void bind_loop(Options& options);
  // Throws std::invalid_argument naming the first option with an impossible value.
  void validate_loop() const;
  // The precision of the matrix products: `precision`, auto resolved for this device and CPU.
  ops::MatmulPrecision matmul_precision() const;
};

// Where the training data stands after an update (the data reader's own counting).
struct DataPosition {
  int64_t epoch = 0;           // epochs completed
  int64_t batch_in_epoch = 0;  // batches of the current epoch consumed
};

// Writes every option of a run (Config::bind's keys) to <model_dir>/train.yaml, atomically.
template <class Config>
void save_train_options(const std::string& model_dir, Config config) {
  if (!Ranks::root()) return;
  Options o;
  config.bind(o);
  write_file_atomic(model_dir + "/" + model_dir::kTrainOptionsFile, o.to_yaml());
}

class TrainingLoop {
 public:
  // Resumes params, the optimizer and the progress from model_dir's newest checkpoint when
  // there is one (logging a "resume" note).
  // `params` are the trained parameters (a LoRA run's adapter), published as `files`.
  TrainingLoop(const LoopConfig& config, const std::string& model_dir, const nn::ParamList& params,
               TrainLog& log, const WeightFiles& files = {});
  bool resumed() const { return resumed_; }
  const Progress& progress() const { return progress_; }
  // A training context with `dropout` and the run's dropout RNG (saved in checkpoints), and
  // the loop's record of MoE routing.
  nn::Context context(float dropout);
  // The run's matrix-product precision, for the AutocastScope around forward and backward passes.
  ops::MatmulPrecision precision() const { return config_.matmul_precision(); }
  // The batches of one update over all ranks: accumulate x ranks.
  int64_t batches_per_update() const { return config_.accumulate * Ranks::size(); }
  // Calls pass(data.next()) for this rank's share of the next update's batches (batch i of them
  // is rank i % ranks's) and data.skip() for the others', so that one rank with --accumulate N
  // trains on the batches N ranks share, in the same order.
  template <class Data, class Pass>
  void for_own_batches(Data& data, Pass&& pass) {
    for (int64_t i = 0; i < batches_per_update(); ++i)
      if (i % Ranks::size() == Ranks::rank())
        pass(data.next());
      else
        data.skip();
  }
  // One forward pass recorded on a tape (loss_fn returns a [1] loss Var summed over `items`
  // target tokens or images) and its backward pass, in the run's precision; returns the loss.
  // Gradients add up until update(). MoE layers' losses, means over their layers, join the
  // backward pass as items * (moe-aux-loss-coef * aux + moe-z-loss-coef * z), so that they
  // weigh per item what they weigh in a mean loss. Dropout draws from a stream of its own per
  // batch of the run (over all ranks), so that a batch sees the same masks on any rank.
  template <class LossFn>
  double forward_backward(int64_t items, LossFn&& loss_fn) {
    ops::AutocastScope autocast(precision());
    Tape tape;
    Var loss, total;
    begin_pass(tape);
    {
      Recording rec(tape);
      loss = loss_fn();
      total = with_moe_losses(loss, items);
    }
    double value = loss.value().item();
    tape.backward(total);
    moe_record_.clear();
    return value;
  }

  // One update from the gradients accumulated since the last one: their sum over `count`
  // items (target tokens, images) whose summed loss is loss_sum; `examples` sentences or
  // images went in. Logs every disp-freq updates and decides whether to stop. A loss or
  // gradient norm that is not finite (bf16 overflow, a bad batch) skips the update, leaving the
  // weights and Adam state as they were, and logs a "skip" note saying which and how often.
  void update(double loss_sum, int64_t count, int64_t examples, const DataPosition& position);
  // Every valid-freq updates and when stopping (once per update).
  bool validation_due() const;
  // While the returned guard lives, the parameters hold the weights that validation measures and
  // the model files publish: the moving average with ema-decay, else the trained weights.
  optim::WeightAverage::Swap evaluation_weights() const {
    return optim::WeightAverage::Swap(average_ ? &*average_ : nullptr);
  }
  // Records a validation whose `score` is better when higher: fills s's epoch, update, best and
  // stalled, logs it, keeps model.best.safetensors, stops early after early-stopping
  // validations without a better score.
  void validated(ValidStats& s, double score, const std::string& score_name);
  // Every save-freq updates and when stopping (once per update).
  void checkpoint_if_due();
  bool stopping() const { return stop_; }
  // Logs the end of the run; returns the number of updates done over all runs.
  int64_t finish();

 private:
  double elapsed() const;  // training seconds over all runs
  double run_seconds() const;
  // The updates the schedule decays over (cosine): max-updates, or with max-time the updates
  // expected by the end of this run at its pace so far, whichever is fewer. A run resumed with
  // max-time keeps the length the checkpoint recorded instead of measuring a new one on its
  // own clock, so that it continues the schedule it was interrupted in.
  int64_t schedule_length() const;
  // Stops (with a note) a resumed max-time run that has reached the end of the cosine
  // schedule it keeps.
  void stop_if_schedule_done();
  // loss plus the MoE losses of moe_record_ (which the log tallies), or loss without MoE.
  Var with_moe_losses(const Var& loss, int64_t items);
  // Before a forward pass: its dropout stream, and the update's gradients (GradientSum) told.
  void begin_pass(Tape& tape);
  // Sums the gradients, the update's counts and rank 0's clock over the ranks.
  void sum_over_ranks(double& loss_sum, int64_t& count, int64_t& examples);
  // With ema-decay: the average from the resumed checkpoint, or from the weights at hand.
  void start_average();

  LoopConfig config_;
  std::string model_dir_;
  nn::ParamList params_;
  TrainLog& log_;
  WeightFiles files_;
  optim::Adam adam_;
  optim::Schedule schedule_;
  std::optional<optim::WeightAverage> average_;  // with ema-decay
  Progress progress_;
  Rng dropout_rng_;
  bool resumed_ = false, stop_ = false;
  std::chrono::steady_clock::time_point run_start_, disp_start_;
  // This run's seconds at the last update, on rank 0's clock (so that every rank decides alike).
  double run_seconds_at_update_ = 0;
  double elapsed_before_ = 0;
  int64_t run_first_update_ = 0;
  int64_t kept_schedule_ = 0;  // the schedule length a resumed max-time run keeps (0: none)
  double disp_loss_ = 0, disp_count_ = 0, disp_norm_ = 0;
  int64_t disp_updates_ = 0, disp_examples_ = 0;
  int64_t skipped_ = 0;                          // updates skipped in this run
  int64_t last_validation_ = 0, last_save_ = 0;  // updates at which these were last done
  nn::MoeRecord moe_record_;                     // of the forward pass under way
  MoeTally disp_moe_, valid_moe_;                // since the last log line, validation
  int64_t passes_ = 0;                           // forward passes of this rank since the update
  GradientSum gradients_;                        // of the update under way
};

}  // namespace qkv::train
