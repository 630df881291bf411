#include "train/loop.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "eval/svg_charts.h"
#include "tensor/threads.h"

namespace qkv::train {

using Clock = std::chrono::steady_clock;

void LoopConfig::bind_loop(Options& o) {
  o.add("max-updates", max_updates, "stop after this many updates (0: no limit)");
  o.add("max-epochs", max_epochs, "stop after this many epochs (0: no limit)");
  o.add("max-time", max_time,
        "stop this run after this many minutes (0: no limit); a cosine schedule then decays "
        "to the updates expected in that time, a length that resumed runs keep (they stop at "
        "its end)");
  o.add("early-stopping", early_stopping,
        "stop after this many validations without a better score (0: never)");
  o.add("optimizer", optimizer, "adam or adamw");
  o.add("lr-schedule", lr_schedule, "inverse-sqrt, cosine or constant (all with warm-up)");
  o.add("learning-rate", learning_rate, "peak learning rate, reached after warmup-steps");
  o.add("warmup-steps", warmup_steps, "updates of linear warm-up");
  o.add("accumulate", accumulate,
        "batches per update on each rank, their gradients summed (mpirun -np N with "
        "batch size B updates as one process with B and accumulate N)");
  o.add("allreduce-bucket-mb", allreduce_bucket_mb,
        "megabytes of gradients per allreduce of a data-parallel (mpirun) run");
  o.add("weight-decay", weight_decay, "decoupled weight decay (adamw)");
  o.add("clip-norm", clip_norm, "clip the global gradient norm to this (0: off)");
  o.add("beta1", beta1, "Adam beta1");
  o.add("beta2", beta2, "Adam beta2");
  o.add("epsilon", epsilon, "Adam epsilon");
  o.add("ema-decay", ema_decay,
        "validate and publish (model.safetensors, model.best.safetensors) a moving average of "
        "the weights, which at update t keeps min(ema-decay, (1 + t) / (10 + t)) of itself; "
        "training goes on from the weights themselves (0: off)");
  o.add("label-smoothing", label_smoothing, "label smoothing of the cross-entropy");
  o.add("dropout", dropout, "dropout on embeddings, sub-layer outputs and the FFN");
  o.add("disp-freq", disp_freq, "log a line every this many updates");
  o.add("valid-freq", valid_freq, "validate every this many updates");
  o.add("save-freq", save_freq, "write a checkpoint every this many updates");
  o.add("seed", seed, "seed of initialisation, batching, augmentation and dropout");
  o.add("threads", threads, "CPU threads for OpenMP and BLAS (0: all cores)");
  o.add("device", device, "cpu or cuda");
  o.add("precision", precision,
        "matrix products: f32, bf16 (bf16 operands, f32 accumulation, f32 weights and "
        "optimizer state; on the cpu fast with AVX512_BF16 only), or auto (bf16 where it is "
        "fast: cuda, or a CPU with AVX512_BF16; else f32)");
  o.add("init-from", init_from,
        "start from this trained model directory: its config, tokenizer and weights (best)");
  lora.bind(o);
  moe_loss.bind(o);
}

ops::MatmulPrecision LoopConfig::matmul_precision() const {
  if (precision != "auto") return ops::precision_from_name(precision);
  bool fast = device == "cuda" || ops::cpu_has_bf16_products();
  return fast ? ops::MatmulPrecision::bf16 : ops::MatmulPrecision::f32;
}

void LoopConfig::validate_loop() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(learning_rate > 0, "learning-rate must be positive");
  need(label_smoothing >= 0 && label_smoothing < 1, "label-smoothing must be in [0, 1)");
  need(dropout >= 0 && dropout < 1, "dropout must be in [0, 1)");
  need(optimizer == "adam" || optimizer == "adamw", "optimizer must be adam or adamw");
  need(ema_decay == 0 || (ema_decay > 0 && ema_decay < 1),
       "ema-decay must be 0 (off) or in (0, 1), not " + std::to_string(ema_decay));
  optim::schedule_from_name(lr_schedule);
  need(device == "cpu" || device == "cuda", "device must be cpu or cuda");
  need(precision == "f32" || precision == "bf16" || precision == "auto",
       "precision must be f32, bf16 or auto, got '" + precision + "'");
  need(accumulate > 0, "accumulate must be positive, not " + std::to_string(accumulate));
  need(allreduce_bucket_mb > 0 && std::isfinite(allreduce_bucket_mb),
       "allreduce-bucket-mb must be positive");
  need(disp_freq > 0 && valid_freq > 0 && save_freq > 0,
       "disp-freq, valid-freq and save-freq must be positive");
  lora.check();
  moe_loss.check();
  need(!lora.enabled() || !init_from.empty(),
       "lora-rank needs init-from: LoRA adapts a trained model");
}

TrainingLoop::TrainingLoop(const LoopConfig& config, const std::string& model_dir,
                           const nn::ParamList& params, TrainLog& log, const WeightFiles& files)
    : config_(config),
      model_dir_(model_dir),
      params_(params),
      log_(log),
      files_(files),
      adam_(params, {float(config.beta1), float(config.beta2), float(config.epsilon),
                     config.optimizer == "adamw" ? float(config.weight_decay) : 0.f}),
      schedule_(optim::schedule_from_name(config.lr_schedule)),
      gradients_(params, config.allreduce_bucket_mb) {
  root_setup_done();
  progress_.rng_seed = uint64_t(config.seed) * 0x9E3779B97F4A7C15ull + 1;
  if (auto resumed = load_checkpoint(model_dir, params, adam_)) {
    progress_ = *resumed;
    resumed_ = true;
    if (config_.max_time > 0) kept_schedule_ = progress_.schedule_updates;
    std::string kept = kept_schedule_ > 0 && schedule_ == optim::Schedule::cosine
                           ? "; the cosine schedule keeps its length of " +
                                 std::to_string(kept_schedule_) + " updates"
                           : "";
    log.note("resume", "resuming from update " + std::to_string(progress_.update) + " (epoch " +
                           std::to_string(progress_.epoch + 1) + ", batch " +
                           std::to_string(progress_.batch_in_epoch) + ")" + kept);
    if (progress_.ranks != Ranks::size())
      log.note("resume", "the checkpoint was saved by " + std::to_string(progress_.ranks) +
                             " ranks, this run has " + std::to_string(Ranks::size()) +
                             ": the batches go on in the same order, " +
                             std::to_string(batches_per_update()) + " to an update");
    stop_if_schedule_done();
  }
  start_average();
  if (config_.precision == "auto")
    log.note("precision", std::string("precision auto: ") + ops::precision_name(precision()) +
                              (config_.device == "cuda"       ? " (cuda)"
                               : ops::cpu_has_bf16_products() ? " (this CPU has AVX512_BF16)"
                                                              : " (this CPU has no AVX512_BF16)"));
  else if (config_.precision == "bf16" && config_.device == "cpu" && !ops::cpu_has_bf16_products())
    log.note("precision",
             "this CPU has no AVX512_BF16: its bf16 products round the operands and multiply "
             "them in f32, slower than precision: f32 (same numbers as a CPU with it, to f32 "
             "rounding)");
  if (Ranks::size() > 1)
    log.note("ranks", "ranks x threads: " + std::to_string(Ranks::size()) + " x " +
                          std::to_string(num_threads()) +
                          "; batches per update: " + std::to_string(batches_per_update()) +
                          "; gradient buckets: " + std::to_string(gradients_.buckets()));
  last_validation_ = last_save_ = progress_.update;  // done already, or nothing to do yet
  elapsed_before_ = progress_.elapsed_s;
  run_first_update_ = progress_.update;
  run_start_ = disp_start_ = Clock::now();
}

void TrainingLoop::start_average() {
  if (config_.ema_decay == 0) return;
  average_.emplace(params_, config_.ema_decay);
  if (!resumed_) return;
  if (std::optional<NamedTensors> saved = load_checkpoint_average(model_dir_))
    average_->load(*saved, model_dir_ + "/checkpoint (weight average)");
  else
    log_.note("resume",
              "the checkpoint holds no weight average: ema-decay starts one from the "
              "weights of update " +
                  std::to_string(progress_.update));
}

nn::Context TrainingLoop::context(float dropout) {
  return {true,          dropout,
          &dropout_rng_, ops::AttentionImpl::automatic,
          &moe_record_,  float(config_.moe_loss.jitter)};
}

void TrainingLoop::begin_pass(Tape& tape) {
  int64_t batch = progress_.batches + Ranks::rank() + passes_ * Ranks::size();
  dropout_rng_.set_state(progress_.rng_seed, uint64_t(batch) << 32);
  gradients_.begin_pass(tape, passes_ == 0, passes_ + 1 == config_.accumulate);
  ++passes_;
  moe_record_.clear();
}

void TrainingLoop::sum_over_ranks(double& loss_sum, int64_t& count, int64_t& examples) {
  gradients_.finish();
  std::vector<double> totals{loss_sum, double(count), double(examples),
                             Ranks::root() ? run_seconds() : 0.0};
  Ranks::sum(totals);
  loss_sum = totals[0], count = int64_t(totals[1]), examples = int64_t(totals[2]);
  run_seconds_at_update_ = totals[3];
  progress_.batches += passes_ * Ranks::size();
  passes_ = 0;
}

Var TrainingLoop::with_moe_losses(const Var& loss, int64_t items) {
  if (moe_record_.layers.empty()) return loss;
  disp_moe_.add(moe_record_), valid_moe_.add(moe_record_);
  Var aux, z;
  for (const nn::MoeLayerRecord& l : moe_record_.layers) {
    aux = aux.defined() ? add(aux, l.aux_loss) : l.aux_loss;
    z = z.defined() ? add(z, l.z_loss) : l.z_loss;
  }
  float per_layer = float(items) / float(moe_record_.layers.size());
  const nn::MoeLossOptions& o = config_.moe_loss;
  return add(loss, add(scale(aux, float(o.aux_loss_coef) * per_layer),
                       scale(z, float(o.z_loss_coef) * per_layer)));
}

double TrainingLoop::run_seconds() const {
  return std::chrono::duration<double>(Clock::now() - run_start_).count();
}

double TrainingLoop::elapsed() const {
  return elapsed_before_ + run_seconds();
}

int64_t TrainingLoop::schedule_length() const {
  if (kept_schedule_ > 0)
    return config_.max_updates > 0 ? std::min(config_.max_updates, kept_schedule_) : kept_schedule_;
  int64_t done = progress_.update - run_first_update_;
  if (config_.max_time <= 0 || done < 1) return config_.max_updates;
  double seconds_per_update = run_seconds_at_update_ / double(done);
  double left = std::max(0.0, config_.max_time * 60.0 - run_seconds_at_update_);
  int64_t expected = progress_.update + int64_t(left / seconds_per_update);
  return config_.max_updates > 0 ? std::min(config_.max_updates, expected) : expected;
}

void TrainingLoop::update(double loss_sum, int64_t count, int64_t examples,
                          const DataPosition& position) {
  sum_over_ranks(loss_sum, count, examples);
  float lr = optim::learning_rate(schedule_, float(config_.learning_rate), progress_.update + 1,
                                  config_.warmup_steps, schedule_length());
  optim::UpdateResult r =
      optim::clipped_update(adam_, params_, loss_sum, count, lr, float(config_.clip_norm));
  if (!r.applied) {
    std::ostringstream what;
    what << "update " << progress_.update + 1 << " skipped, weights and optimizer state unchanged: "
         << (std::isfinite(loss_sum) ? "the gradient norm" : "the loss") << " is not finite (loss "
         << loss_sum / double(std::max<int64_t>(count, 1)) << ", gradient norm " << r.grad_norm
         << "); " << ++skipped_ << " skipped in this run";
    log_.note("skip", what.str());
  } else {
    ++progress_.update;
    if (average_) average_->update(progress_.update);
    disp_loss_ += loss_sum, disp_count_ += double(count), disp_norm_ += r.grad_norm,
        ++disp_updates_;
  }
  progress_.sentences += examples;
  progress_.target_tokens += count;
  progress_.epoch = position.epoch, progress_.batch_in_epoch = position.batch_in_epoch;
  log_.progress(progress_.update % config_.disp_freq, config_.disp_freq, progress_.update);

  if (progress_.update % config_.disp_freq == 0 && disp_updates_ > 0) {
    double secs = std::chrono::duration<double>(Clock::now() - disp_start_).count();
    disp_moe_.sum_over_ranks();
    std::optional<AllreduceStats> allreduce;
    if (Ranks::size() > 1) {
      GradientSum::Timing t = gradients_.take_timing();
      double per_update = 1e3 / double(disp_updates_);
      allreduce = AllreduceStats{t.allreduce_s * per_update, t.exposed_s * per_update};
    }
    log_.update({progress_.epoch + 1, progress_.update, progress_.sentences,
                 disp_loss_ / disp_count_,
                 optim::learning_rate(schedule_, float(config_.learning_rate), progress_.update,
                                      config_.warmup_steps, schedule_length()),
                 disp_norm_ / double(disp_updates_), disp_count_ / secs, elapsed(),
                 disp_moe_.empty() ? std::nullopt : std::optional(disp_moe_.stats()), allreduce});
    disp_loss_ = disp_count_ = disp_norm_ = 0, disp_updates_ = 0;
    disp_moe_.clear();
    disp_start_ = Clock::now();
  }
  bool out_of_time = config_.max_time > 0 && run_seconds_at_update_ >= config_.max_time * 60.0;
  stop_ = (config_.max_updates > 0 && progress_.update >= config_.max_updates) ||
          (config_.max_epochs > 0 && progress_.epoch >= config_.max_epochs) || out_of_time;
  stop_if_schedule_done();
}

void TrainingLoop::stop_if_schedule_done() {
  // Past its end a cosine schedule's learning rate is 0: more updates would change nothing.
  if (stop_ || kept_schedule_ == 0 || schedule_ != optim::Schedule::cosine ||
      progress_.update < kept_schedule_)
    return;
  log_.note("stop", "the cosine schedule of " + std::to_string(kept_schedule_) +
                        " updates that max-time fixed in an earlier run is complete (train into "
                        "a new model directory to start another)");
  stop_ = true;
}

bool TrainingLoop::validation_due() const {
  return (progress_.update % config_.valid_freq == 0 || stop_) &&
         progress_.update != last_validation_;
}

void TrainingLoop::validated(ValidStats& s, double score, const std::string& score_name) {
  score = Ranks::broadcast(score);  // every rank decides on rank 0's score
  last_validation_ = progress_.update;
  s.epoch = progress_.epoch + 1, s.update = progress_.update;
  s.best = score > progress_.best_score;
  if (s.best) {
    progress_.best_score = score;
    progress_.validations_without_improvement = 0;
    if (Ranks::root())
      save_best(model_dir_, average_ ? average_->weights() : nn::param_tensors(params_), progress_,
                files_);
  } else {
    ++progress_.validations_without_improvement;
  }
  s.stalled = progress_.validations_without_improvement;
  log_.validation(s);
  valid_moe_.sum_over_ranks();
  if (!valid_moe_.empty() && Ranks::root()) {
    log_.note("moe", "MoE routing since the last validation: " + valid_moe_.summary());
    write_file_atomic(
        model_dir_ + "/moe_load.svg",
        eval::expert_load_svg(valid_moe_.stats().load, "Expert load up to update " +
                                                           std::to_string(progress_.update) +
                                                           " (since the previous validation)"));
  }
  valid_moe_.clear();
  if (config_.early_stopping > 0 &&
      progress_.validations_without_improvement >= config_.early_stopping) {
    log_.note("stop", "early stopping: no better " + score_name + " in " +
                          std::to_string(config_.early_stopping) + " validations");
    stop_ = true;
  }
}

void TrainingLoop::checkpoint_if_due() {
  if (!(progress_.update % config_.save_freq == 0 || stop_) || progress_.update == last_save_)
    return;
  last_save_ = progress_.update;
  progress_.ranks = Ranks::size();
  progress_.elapsed_s = elapsed();
  progress_.schedule_updates = config_.max_time > 0 ? schedule_length() : 0;
  if (Ranks::root())
    save_checkpoint(model_dir_, params_, adam_, progress_, files_,
                    average_ ? &average_->weights() : nullptr);
}

int64_t TrainingLoop::finish() {
  log_.note("done", "training finished at update " + std::to_string(progress_.update) + " after " +
                        std::to_string(int64_t(elapsed())) + " s");
  return progress_.update;
}

}  // namespace qkv::train
