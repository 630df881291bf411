#include "train/trainer.h"

#include <filesystem>
#include <optional>

#include "data/batcher.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "decode/translator.h"
#include "eval/metrics.h"
#include "model_dir/seq2seq_dir.h"
#include "tensor/threads.h"
#include "train/fine_tune.h"
#include "train/loop.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {

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
    log.note("spm", "training a " + std::to_string(cfg.model.vocab_size) + "-subword " +
                        cfg.spm_type + " SentencePiece model on both sides of the training data");
    data::TokenizerOptions o;
    o.vocab_size = int(cfg.model.vocab_size);
    o.model_type = cfg.spm_type;
    o.seed = uint64_t(cfg.seed);
    o.max_sentences = cfg.spm_max_sentences;
    return data::Tokenizer::train_joint(train, o);
  }();
  tok.save(cfg.model_dir);
  return tok;
}

nn::Seq2SeqConfig model_config_for(const TrainConfig& cfg, const data::Tokenizer& tok) {
  std::string path = model_dir::config_path(cfg.model_dir);
  if (fs::exists(path)) {
    nn::Seq2SeqConfig saved = model_dir::read_seq2seq_config(path);
    if (saved.vocab_size != tok.vocab_size())
      throw std::runtime_error(path + ": vocab-size " + std::to_string(saved.vocab_size) +
                               " differs from spm.model's " + std::to_string(tok.vocab_size()));
    saved.dropout = cfg.dropout;
    return saved;
  }
  nn::Seq2SeqConfig c = cfg.model_config(tok.vocab_size());
  model_dir::write_config(path, c);
  return c;
}

struct Validation {
  std::vector<data::Batch> batches;              // for the loss
  std::vector<std::string> sources, references;  // for BLEU
};

// The tokenized sources of `corpus`, ending with <eos> when the model wants it.
std::vector<std::vector<int32_t>> sources_of(const data::ParallelCorpus& corpus,
                                             const data::Tokenizer& tok,
                                             const nn::Seq2SeqConfig& mc, int64_t max_len) {
  auto ids = tok.encode_all(corpus.src);
  if (mc.source_eos) data::fit_sources(ids, max_len, mc.eos_id);  // else the batcher cuts
  return ids;
}

Validation make_validation(const TrainConfig& cfg, const data::Tokenizer& tok,
                           const nn::Seq2SeqConfig& mc, Device device) {
  Validation v;
  if (cfg.valid_sets.empty()) return v;
  data::ParallelCorpus corpus = read_all(cfg.valid_sets);
  data::BatcherOptions o;
  o.max_tokens = cfg.batch_tokens;
  o.max_len = int32_t(cfg.max_length);
  o.shuffle = false;
  o.pad_id = mc.pad_id, o.bos_id = mc.bos_id, o.eos_id = mc.eos_id;
  data::Batcher batcher(sources_of(corpus, tok, mc, cfg.max_length),
                        tok.encode_all(corpus.tgt, data::Side::target), o);
  for (const auto& plan : batcher.epoch_plan(0))
    v.batches.push_back(batcher.make_batch(plan).to(device));
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
  s.scores = {{"BLEU", corpus_bleu(hyps, {v.references}).score},
              {"chrF", corpus_chrf(hyps, {v.references}).score}};
  return s;
}
}  // namespace

Var batch_loss(const nn::Seq2Seq& model, const data::Batch& b, float smoothing,
               const nn::Context& ctx) {
  Var logits = model.forward(b.src, b.src_lengths, b.tgt_in, ctx);  // [B, T, V]
  int64_t v = model.config().vocab_size;
  return cross_entropy_sum(reshape(logits, {-1, v}), b.tgt_out.reshape({-1}), model.config().pad_id,
                           smoothing);
}

int64_t train_seq2seq(const TrainConfig& cfg, const Distillation<data::Batch>* distill) {
  cfg.validate();
  Device device = usable_device(cfg.device);
  set_num_threads(threads_per_rank(cfg.threads));
  wait_for_root_setup();
  std::optional<model_dir::TranslationModel> base;
  std::optional<LoraRun> lora;
  if (!cfg.init_from.empty()) {
    check_init_from(cfg, cfg.model_dir, model_dir::Family::seq2seq);
    base = model_dir::load_translation_dir(cfg.init_from);
    base->model->to(device);
    if (cfg.lora.enabled())
      lora = start_lora(cfg, cfg.model_dir, base->model->params(), base->model->linears(),
                        {"q_proj", "v_proj"});
  }
  check_no_foreign_model(cfg.model_dir, lora.has_value());
  fs::create_directories(cfg.model_dir);
  TrainLog log(cfg.model_dir);

  data::ParallelCorpus corpus = read_all(cfg.train_sets);
  data::Tokenizer tok = base ? std::move(*base->tokenizer) : tokenizer_for(cfg, corpus, log);
  nn::Seq2SeqConfig mc = base ? base->model->config() : model_config_for(cfg, tok);
  std::unique_ptr<nn::Seq2Seq> owned;
  if (base) {
    owned = std::move(base->model);
    mc.dropout = cfg.dropout;
    if (!lora && Ranks::root()) {  // full fine-tuning: the model directory is a complete one
      model_dir::write_config(model_dir::config_path(cfg.model_dir), mc);
      tok.save(cfg.model_dir);
    }
  } else {
    owned = std::make_unique<nn::Seq2Seq>(mc);
    Rng init_rng(uint64_t(cfg.seed));
    owned->init(init_rng);
    owned->to(device);  // before the loop: a resumed checkpoint is copied onto the device
  }
  nn::Seq2Seq& model = *owned;
  if (lora)
    publish_lora(cfg, cfg.model_dir, *lora, "SEQ_2_SEQ_LM", nn::count_params(model.params()), log);
  nn::ParamList params = lora ? lora->adapter.params() : model.params();
  TrainingLoop loop(cfg, cfg.model_dir, params, log, lora ? lora->files() : WeightFiles{});
  if (!loop.resumed() && base) note_init_from(cfg, log);
  if (!loop.resumed() && !base)
    log.note("start", "new " + std::to_string(mc.encoder_layers) + "+" +
                          std::to_string(mc.decoder_layers) + "-layer model, d-model " +
                          std::to_string(mc.d_model) + ", " +
                          std::to_string(nn::count_params(params)) + " parameters");
  save_train_options(cfg.model_dir, cfg);

  data::BatcherOptions bo;
  bo.max_tokens = cfg.batch_tokens;
  bo.max_len = int32_t(cfg.max_length);
  bo.seed = uint64_t(cfg.seed);
  bo.pad_id = mc.pad_id, bo.bos_id = mc.bos_id, bo.eos_id = mc.eos_id;
  data::Batcher batcher(sources_of(corpus, tok, mc, cfg.max_length),
                        tok.encode_all(corpus.tgt, data::Side::target), bo);
  data::report_batcher("train", batcher);
  batcher.seek({loop.progress().epoch, loop.progress().batch_in_epoch});
  Validation valid = make_validation(cfg, tok, mc, device);
  nn::Context ctx = loop.context(mc.dropout);

  while (!loop.stopping()) {
    // One update: this rank's share of the update's batches, or (one rank) batches until
    // update-tokens target tokens.
    int64_t tokens = 0, sentences = 0;
    double loss_sum = 0;
    do {
      loop.for_own_batches(batcher, [&](data::Batch host) {
        data::Batch b = host.to(device);
        Tensor teacher = distill ? distill->teacher_logits(b) : Tensor();  // [B * T, V], no tape
        loss_sum += loop.forward_backward(b.n_tgt_tokens, [&] {
          if (!distill) return batch_loss(model, b, cfg.label_smoothing, ctx);
          Var logits = model.forward(b.src, b.src_lengths, b.tgt_in, ctx);  // [B, T, V]
          return distillation_loss(reshape(logits, {-1, mc.vocab_size}), teacher,
                                   b.tgt_out.reshape({-1}), mc.pad_id, cfg.label_smoothing,
                                   distill->weights);
        });
        tokens += b.n_tgt_tokens;
        sentences += b.size();
      });
    } while (tokens < cfg.update_tokens);
    data::BatchPosition pos = batcher.position();
    loop.update(loss_sum, tokens, sentences, {pos.epoch, pos.batch});
    if (!valid.sources.empty() && loop.validation_due()) {
      auto averaged = loop.evaluation_weights();
      ops::AutocastScope autocast(loop.precision());
      ValidStats s = validate(model, tok, valid, cfg);
      loop.validated(s, s.scores[0].second, "BLEU");
    }
    loop.checkpoint_if_due();
  }
  return loop.finish();
}

}  // namespace qkv::train
