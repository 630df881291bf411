#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "data/batcher.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "decode/translator.h"
#include "eval/metrics.h"
#include "io/atomic_file.h"
#include "tensor/threads.h"
#include "train/checkpoint.h"
#include "train/train_log.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {
using Clock = std::chrono::steady_clock;

data::ParallelCorpus read_all(const std::vector<std::string>& specs) {
  data::ParallelCorpus all;
  for (const auto& spec : specs) {
    data::ParallelCorpus c = data::read_corpus(spec);
    data::report_corpus(spec, c);
    all.src.insert(all.src.end(), c.src.begin(), c.src.end());
    all.tgt.insert(all.tgt.end(), c.tgt.begin(), c.tgt.end());
    all.skipped_empty += c.skipped_empty;
  }
  return all;
}

// The model directory's tokenizer: the one saved there, the one named by spm-model, or a new
// one trained on the training corpus.
data::Tokenizer tokenizer_for(const TrainConfig& cfg, const data::ParallelCorpus& train,
                              TrainLog& log) {
  std::string saved = cfg.model_dir + "/spm.model";
  if (fs::exists(saved)) return data::Tokenizer::load(saved);
  data::Tokenizer tok = [&] {
    if (!cfg.spm_model.empty()) return data::Tokenizer::load(cfg.spm_model);
    log.note("spm", "training a " + std::to_string(cfg.vocab_size) + "-subword " + cfg.spm_type +
                        " SentencePiece model on both sides of the training data");
    data::TokenizerOptions o;
    o.vocab_size = int(cfg.vocab_size);
    o.model_type = cfg.spm_type;
    o.seed = uint64_t(cfg.seed);
    o.max_sentences = cfg.spm_max_sentences;
    return data::Tokenizer::train_joint(train, o);
  }();
  tok.save(cfg.model_dir);
  return tok;
}

nn::Seq2SeqConfig model_config_for(const TrainConfig& cfg, const data::Tokenizer& tok) {
  std::string path = cfg.model_dir + "/config.yaml";
  if (fs::exists(path)) {
    nn::Seq2SeqConfig saved = nn::Seq2SeqConfig::load(path);
    if (saved.vocab_size != tok.vocab_size())
      throw std::runtime_error(path + ": vocab-size " + std::to_string(saved.vocab_size) +
                               " differs from spm.model's " + std::to_string(tok.vocab_size()));
    saved.dropout = cfg.dropout;
    return saved;
  }
  nn::Seq2SeqConfig c = cfg.model_config(tok.vocab_size());
  c.save(path);
  return c;
}

// Summed label-smoothed cross-entropy of one batch, recorded on `tape` when given.
Var batch_loss(const nn::Seq2Seq& model, const data::Batch& b, float smoothing,
               const nn::Context& ctx) {
  Var logits = model.forward(b.src, b.src_lengths, b.tgt_in, ctx);  // [B, T, V]
  int64_t v = model.config().vocab_size;
  return cross_entropy_sum(reshape(logits, {-1, v}), b.tgt_out.reshape({-1}), model.config().pad_id,
                           smoothing);
}

struct Validation {
  std::vector<data::Batch> batches;              // for the loss
  std::vector<std::string> sources, references;  // for BLEU
};

Validation make_validation(const TrainConfig& cfg, const data::Tokenizer& tok) {
  Validation v;
  if (cfg.valid_sets.empty()) return v;
  data::ParallelCorpus corpus = read_all(cfg.valid_sets);
  data::BatcherOptions o;
  o.max_tokens = cfg.batch_tokens;
  o.max_len = int32_t(cfg.max_length);
  o.shuffle = false;
  data::Batcher batcher(tok.encode_all(corpus.src), tok.encode_all(corpus.tgt), o);
  for (const auto& plan : batcher.epoch_plan(0)) v.batches.push_back(batcher.make_batch(plan));
  size_t n = cfg.valid_max_sentences > 0
                 ? std::min<size_t>(corpus.src.size(), size_t(cfg.valid_max_sentences))
                 : corpus.src.size();
  v.sources.assign(corpus.src.begin(), corpus.src.begin() + n);
  v.references.assign(corpus.tgt.begin(), corpus.tgt.begin() + n);
  return v;
}

ValidStats validate(const nn::Seq2Seq& model, const data::Tokenizer& tok, const Validation& v,
                    const TrainConfig& cfg) {
  nn::Context ctx;  // evaluation: no dropout, no tape
  double loss = 0, tokens = 0;
  for (const auto& b : v.batches) {
    loss += batch_loss(model, b, 0.f, ctx).value().item();
    tokens += double(b.n_tgt_tokens);
  }
  decode::TranslatorOptions o;
  o.batch_tokens = std::max<int64_t>(cfg.batch_tokens, 1024);
  decode::Translator translator(model, tok, o);
  std::vector<std::string> hyps;
  for (auto& nbest : translator.translate(v.sources)) hyps.push_back(nbest[0].text);
  ValidStats s;
  s.loss = tokens > 0 ? loss / tokens : 0;
  s.bleu = corpus_bleu(hyps, {v.references}).score;
  s.chrf = corpus_chrf(hyps, {v.references}).score;
  return s;
}
}  // namespace

int64_t train_seq2seq(const TrainConfig& cfg) {
  cfg.validate();
  if (cfg.device != "cpu")
    throw std::invalid_argument("device '" + cfg.device + "' is not available in this build");
  set_num_threads(int(cfg.threads));
  fs::create_directories(cfg.model_dir);
  TrainLog log(cfg.model_dir);

  data::ParallelCorpus corpus = read_all(cfg.train_sets);
  data::Tokenizer tok = tokenizer_for(cfg, corpus, log);
  nn::Seq2SeqConfig mc = model_config_for(cfg, tok);
  nn::Seq2Seq model(mc);
  Rng init_rng(uint64_t(cfg.seed));
  model.init(init_rng);
  nn::ParamList params = model.params();
  optim::Adam adam(params, {float(cfg.beta1), float(cfg.beta2), float(cfg.epsilon),
                            cfg.optimizer == "adamw" ? float(cfg.weight_decay) : 0.f});
  optim::Schedule schedule = optim::schedule_from_name(cfg.lr_schedule);

  Progress progress;
  progress.rng_seed = uint64_t(cfg.seed) * 0x9E3779B97F4A7C15ull + 1;
  if (auto resumed = load_checkpoint(cfg.model_dir, params, adam)) {
    progress = *resumed;
    log.note("resume", "resuming from update " + std::to_string(progress.update) + " (epoch " +
                           std::to_string(progress.epoch + 1) + ", batch " +
                           std::to_string(progress.batch_in_epoch) + ")");
  } else {
    log.note("start", "new " + std::to_string(mc.encoder_layers) + "+" +
                          std::to_string(mc.decoder_layers) + "-layer model, d-model " +
                          std::to_string(mc.d_model) + ", " +
                          std::to_string(nn::count_params(params)) + " parameters");
  }
  write_file_atomic(cfg.model_dir + "/train.yaml", [&] {
    TrainConfig copy = cfg;
    Options o;
    copy.bind(o);
    return o.to_yaml();
  }());

  data::BatcherOptions bo;
  bo.max_tokens = cfg.batch_tokens;
  bo.max_len = int32_t(cfg.max_length);
  bo.seed = uint64_t(cfg.seed);
  data::Batcher batcher(tok.encode_all(corpus.src), tok.encode_all(corpus.tgt), bo);
  data::report_batcher("train", batcher);
  batcher.seek({progress.epoch, progress.batch_in_epoch});
  Validation valid = make_validation(cfg, tok);

  Rng dropout_rng(progress.rng_seed, progress.rng_offset);
  nn::Context ctx{true, mc.dropout, &dropout_rng, ops::AttentionImpl::automatic};
  auto run_start = Clock::now();
  double elapsed_before = progress.elapsed_s;
  auto elapsed = [&] {
    return elapsed_before + std::chrono::duration<double>(Clock::now() - run_start).count();
  };
  double disp_loss = 0, disp_tokens = 0, disp_norm = 0;
  auto disp_start = Clock::now();
  int64_t disp_updates = 0;
  bool stop = false;

  auto checkpoint = [&] {
    progress.rng_offset = dropout_rng.offset();
    progress.elapsed_s = elapsed();
    save_checkpoint(cfg.model_dir, params, adam, progress);
  };

  while (!stop) {
    // One update: batches until update-tokens target tokens (at least one batch).
    int64_t tokens = 0, sentences = 0;
    double loss_sum = 0;
    do {
      data::Batch b = batcher.next();
      Tape tape;
      Var loss;
      {
        Recording rec(tape);
        loss = batch_loss(model, b, cfg.label_smoothing, ctx);
      }
      loss_sum += loss.value().item();
      tape.backward(loss);
      tokens += b.n_tgt_tokens;
      sentences += b.size();
    } while (tokens < cfg.update_tokens);

    double scale = 1.0 / double(tokens);
    double norm = optim::grad_norm(params) * scale;
    if (!std::isfinite(loss_sum) || !std::isfinite(norm)) {
      log.note("skip", "update " + std::to_string(progress.update + 1) +
                           " skipped: the loss or gradient is not finite");
      optim::zero_grads(params);
    } else {
      if (cfg.clip_norm > 0 && norm > cfg.clip_norm) scale *= cfg.clip_norm / norm;
      float lr = optim::learning_rate(schedule, float(cfg.learning_rate), progress.update + 1,
                                      cfg.warmup_steps, cfg.max_updates);
      adam.step(lr, float(scale));
      optim::zero_grads(params);
      ++progress.update;
      disp_loss += loss_sum, disp_tokens += double(tokens), disp_norm += norm, ++disp_updates;
    }
    progress.sentences += sentences;
    progress.target_tokens += tokens;
    data::BatchPosition pos = batcher.position();
    progress.epoch = pos.epoch, progress.batch_in_epoch = pos.batch;
    log.progress(progress.update % cfg.disp_freq, cfg.disp_freq, progress.update);

    if (progress.update % cfg.disp_freq == 0 && disp_updates > 0) {
      double secs = std::chrono::duration<double>(Clock::now() - disp_start).count();
      log.update({progress.epoch + 1, progress.update, progress.sentences, disp_loss / disp_tokens,
                  optim::learning_rate(schedule, float(cfg.learning_rate), progress.update,
                                       cfg.warmup_steps, cfg.max_updates),
                  disp_norm / double(disp_updates), disp_tokens / secs, elapsed()});
      disp_loss = disp_tokens = disp_norm = 0, disp_updates = 0;
      disp_start = Clock::now();
    }
    bool out_of_time =
        cfg.max_time > 0 &&
        std::chrono::duration<double>(Clock::now() - run_start).count() >= cfg.max_time * 60.0;
    stop = (cfg.max_updates > 0 && progress.update >= cfg.max_updates) ||
           (cfg.max_epochs > 0 && progress.epoch >= cfg.max_epochs) || out_of_time;
    bool validate_now = !valid.sources.empty() && (progress.update % cfg.valid_freq == 0 || stop) &&
                        disp_updates == 0;
    if (validate_now) {
      ValidStats s = validate(model, tok, valid, cfg);
      s.epoch = progress.epoch + 1, s.update = progress.update;
      s.best = s.bleu > progress.best_bleu;
      if (s.best) {
        progress.best_bleu = s.bleu;
        progress.validations_without_improvement = 0;
        save_best(cfg.model_dir, params, progress);
      } else {
        ++progress.validations_without_improvement;
      }
      s.stalled = progress.validations_without_improvement;
      log.validation(s);
      if (cfg.early_stopping > 0 &&
          progress.validations_without_improvement >= cfg.early_stopping) {
        log.note("stop", "early stopping: no better BLEU in " + std::to_string(cfg.early_stopping) +
                             " validations");
        stop = true;
      }
    }
    if (progress.update % cfg.save_freq == 0 || stop) checkpoint();
  }
  log.note("done", "training finished at update " + std::to_string(progress.update) + " after " +
                       std::to_string(int64_t(elapsed())) + " s");
  return progress.update;
}

}  // namespace qkv::train
