#include "train/lm_trainer.h"

#include <cmath>
#include <filesystem>
#include <optional>

#include "data/lm_tokenizer.h"
#include "data/lm_windows.h"
#include "decode/generator.h"
#include "eval/lm_eval.h"
#include "model_dir/gpt_dir.h"
#include "tensor/threads.h"
#include "train/fine_tune.h"
#include "train/loop.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> read_all(const std::vector<std::string>& paths, const LmTrainConfig& cfg) {
  std::vector<std::string> all;
  for (const auto& path : paths) {
    data::DocumentCorpus c =
        data::read_documents(path, {cfg.document_separator, int32_t(cfg.text_column)});
    all.insert(all.end(), std::make_move_iterator(c.documents.begin()),
               std::make_move_iterator(c.documents.end()));
  }
  return all;
}

// The model directory's tokenizer, or a new one trained on the training documents (a chars
// tokenizer also on the validation documents, as nanoGPT's vocabulary is every character of its
// text: one it lacks could not be encoded; sentencepiece falls back to bytes).
std::unique_ptr<data::LmTokenizer> tokenizer_for(const LmTrainConfig& cfg,
                                                 const std::vector<std::string>& documents,
                                                 const std::vector<std::string>& valid_documents,
                                                 TrainLog& log) {
  if (data::LmTokenizer::exists_in(cfg.model_dir))
    return data::LmTokenizer::load_dir(cfg.model_dir);
  data::LmTokenizerOptions o;
  o.vocab_size = int(cfg.vocab_size);
  o.max_sentences = cfg.tokenizer_max_documents;
  o.seed = uint64_t(cfg.seed);
  std::unique_ptr<data::LmTokenizer> tok;
  if (cfg.tokenizer == "chars") {
    log.note("tokenizer", "one token per character of the training and validation text");
    std::vector<std::string> all = documents;
    all.insert(all.end(), valid_documents.begin(), valid_documents.end());
    tok = data::LmTokenizer::train("chars", all, o);
  } else {
    log.note("tokenizer", "training a " + std::to_string(cfg.vocab_size) +
                              "-token SentencePiece BPE model with byte fallback");
    tok = data::LmTokenizer::train(cfg.tokenizer, documents, o);
  }
  tok->save(cfg.model_dir);
  return tok;
}

// The saved config.yaml of a resumed run (its dropout from this run's options), or a new one.
nn::GptConfig model_config_for(const LmTrainConfig& cfg, const data::LmTokenizer& tok) {
  nn::GptConfig asked = cfg.model_config(tok.vocab_size(), tok.bos_id(), tok.eos_id());
  std::string path = model_dir::config_path(cfg.model_dir);
  if (!fs::exists(path)) {
    model_dir::write_config(path, asked);
    return asked;
  }
  nn::GptConfig saved = model_dir::read_gpt_config(path);
  if (saved.vocab_size != tok.vocab_size())
    throw std::runtime_error(path + ": vocab-size " + std::to_string(saved.vocab_size) +
                             " differs from the tokenizer's " + std::to_string(tok.vocab_size()));
  saved.dropout = asked.dropout;
  return saved;
}

data::TokenStream stream_of(const std::vector<std::string>& documents,
                            const data::LmTokenizer& tok) {
  return data::build_token_stream(
      documents, [&](std::string_view text) { return tok.encode(text); },
      tok.add_bos() ? tok.bos_id() : -1, tok.eos_id());
}

// The validation windows: the first validation documents up to about max_tokens tokens (0: all).
data::EvalWindows make_validation(std::vector<std::string> documents, const LmTrainConfig& cfg,
                                  const data::LmTokenizer& tok, const nn::GptConfig& mc) {
  if (cfg.valid_max_tokens > 0) {
    size_t n = 0;
    for (int64_t tokens = 0; n < documents.size() && tokens < cfg.valid_max_tokens; ++n)
      tokens += int64_t(tok.encode(documents[n]).size()) + 1;
    documents.resize(n);
  }
  return data::eval_windows(stream_of(documents, tok), mc.context_length, cfg.batch_size);
}

std::string sample(const nn::Gpt& model, const data::LmTokenizer& tok, const LmTrainConfig& cfg) {
  decode::GenerationOptions o;
  o.max_new_tokens = cfg.sample_tokens;
  o.sampling.temperature = 0.8f, o.sampling.top_k = 200;  // nanoGPT's sample.py
  o.sampling.seed = uint64_t(cfg.seed);
  decode::Generator generator(model, tok, o);
  return cfg.sample_prompt + generator.generate({cfg.sample_prompt})[0].text;
}

}  // namespace

int64_t train_lm(const LmTrainConfig& cfg, const Distillation<data::LmBatch>* distill) {
  cfg.validate();
  Device device = usable_device(cfg.device);
  set_num_threads(threads_per_rank(cfg.threads));
  wait_for_root_setup();
  std::optional<model_dir::LanguageModel> base;
  std::optional<LoraRun> lora;
  if (!cfg.init_from.empty()) {
    check_init_from(cfg, cfg.model_dir, model_dir::Family::gpt);
    base = model_dir::load_language_model_dir(cfg.init_from);
    base->model->to(device);
    if (cfg.lora.enabled())
      lora = start_lora(cfg, cfg.model_dir, base->model->params(), base->model->linears(),
                        {"q_proj", "v_proj"});
  }
  check_no_foreign_model(cfg.model_dir, lora.has_value());
  // The data first: a bad file stops the run before anything is written.
  std::vector<std::string> documents = read_all(cfg.train_sets, cfg);
  std::vector<std::string> valid_documents = read_all(cfg.valid_sets, cfg);
  fs::create_directories(cfg.model_dir);
  TrainLog log(cfg.model_dir, {"Seq.", "sequences", "tokens", "tokens_per_s"});
  auto tok =
      base ? std::move(base->tokenizer) : tokenizer_for(cfg, documents, valid_documents, log);
  nn::GptConfig mc = base ? base->model->config() : model_config_for(cfg, *tok);
  if (base) {
    if (cfg.dropout >= 0) mc.dropout = cfg.dropout;  // else the base's
    if (!lora && Ranks::root()) {  // full fine-tuning: the model directory is a complete one
      model_dir::write_config(model_dir::config_path(cfg.model_dir), mc);
      tok->save(cfg.model_dir);
    }
  }
  data::TokenStream train_stream = stream_of(documents, *tok);
  documents = {};
  log.note("data", std::to_string(train_stream.documents) + " documents, " +
                       std::to_string(train_stream.tokens.size()) + " tokens, " +
                       std::to_string(train_stream.characters) + " characters");
  data::WindowSampler sampler(std::move(train_stream.tokens), mc.context_length, cfg.batch_size,
                              uint64_t(cfg.seed));

  std::unique_ptr<nn::Gpt> owned;
  if (base) {
    owned = std::move(base->model);
  } else {
    owned = std::make_unique<nn::Gpt>(mc);
    Rng init_rng(uint64_t(cfg.seed));
    owned->init(init_rng);
    owned->to(device);  // before the loop: a resumed checkpoint is copied onto the device
  }
  nn::Gpt& model = *owned;
  if (lora)
    publish_lora(cfg, cfg.model_dir, *lora, "CAUSAL_LM", nn::count_params(model.params()), log);
  nn::ParamList params = lora ? lora->adapter.params() : model.params();
  TrainingLoop loop(cfg, cfg.model_dir, params, log, lora ? lora->files() : WeightFiles{});
  if (!loop.resumed() && base) note_init_from(cfg, log);
  if (!loop.resumed() && !base)
    log.note("start", "new GPT: " + std::to_string(mc.layers) + " layers, d-model " +
                          std::to_string(mc.d_model) + ", context " +
                          std::to_string(mc.context_length) + ", " +
                          std::to_string(nn::count_params(params)) + " parameters");
  save_train_options(cfg.model_dir, cfg);
  sampler.seek(loop.progress().batch_in_epoch);
  data::EvalWindows valid;
  if (!valid_documents.empty()) valid = make_validation(std::move(valid_documents), cfg, *tok, mc);
  nn::Context ctx = loop.context(mc.dropout);

  while (!loop.stopping()) {
    int64_t tokens = 0, sequences = 0;
    double loss_sum = 0;
    loop.for_own_batches(sampler, [&](const data::LmBatch& b) {
      // The teacher runs before the pass, outside its tape: nothing of it is recorded.
      Tensor teacher = distill ? distill->teacher_logits(b) : Tensor();  // [B * L, V]
      loss_sum += loop.forward_backward(b.scored_tokens, [&] {
        if (!distill)
          return eval::lm_loss_sum(model, b.inputs.to(device), b.targets.to(device),
                                   cfg.label_smoothing, ctx);
        Var logits = reshape(model.forward(b.inputs.to(device), ctx), {-1, mc.vocab_size});
        return distillation_loss(logits, teacher, b.targets.to(device).reshape({-1}),
                                 data::kIgnoreTarget, cfg.label_smoothing, distill->weights);
      });
      tokens += b.scored_tokens, sequences += b.rows();
    });
    loop.update(loss_sum, tokens, sequences, {0, sampler.position()});
    if (!valid.batches.empty() && loop.validation_due()) {
      auto averaged = loop.evaluation_weights();
      ops::AutocastScope autocast(loop.precision());
      double loss = eval::summed_loss(model, valid);
      ValidStats s;
      s.loss = loss / double(valid.scored_tokens);
      s.scores = {{"perplexity", std::exp(s.loss)}, {"bpc", valid.bits_per_character(loss)}};
      loop.validated(s, -s.loss, "loss");
      if (cfg.sample_tokens > 0) log.note("sample", sample(model, *tok, cfg));
    }
    loop.checkpoint_if_due();
  }
  return loop.finish();
}

}  // namespace qkv::train
