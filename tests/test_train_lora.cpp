// Fine-tuning from a trained model (init-from) in every trainer: a LoRA run writes only a
// peft-keyed adapter of the targeted modules, leaves the base's files as they were and resumes
// exactly; full fine-tuning starts from the base's weights into a complete model directory;
// the base gets no gradients; bad input is refused with the names that matter, writing nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "autograd/tape.h"
#include "data/corpus.h"
#include "data/lm_text.h"
#include "eval/lm_eval.h"
#include "io/safetensors.h"
#include "model_dir/adapter_dir.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"
#include "support/bible_subset.h"
#include "support/cli_run.h"
#include "support/torch_ref.h"
#include "support/training_checks.h"
#include "train/fine_tune.h"
#include "train/lm_trainer.h"
#include "train/trainer.h"
#include "train/vit_trainer.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  std::string dir = temp_path(name);
  fs::remove_all(dir);
  return dir;
}

// The files of two snapshots that differ (or are in one only).
std::vector<std::string> changed_files(const std::map<std::string, std::string>& a,
                                       const std::map<std::string, std::string>& b) {
  std::vector<std::string> out;
  for (const auto& [path, bytes] : a)
    if (!b.contains(path) || b.at(path) != bytes) out.push_back(path);
  for (const auto& [path, bytes] : b)
    if (!a.contains(path)) out.push_back(path);
  return out;
}

// Every file under dir: its path relative to dir and its bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_text(e.path());
  return files;
}

std::set<std::string> keys_of(const std::string& safetensors) {
  std::set<std::string> keys;
  for (const auto& [name, t] : load_safetensors(safetensors)) keys.insert(name);
  return keys;
}

// peft's keys of the modules of `linears` whose names end in one of `endings`.
std::set<std::string> lora_keys(const nn::LinearList& linears,
                                const std::vector<std::string>& endings) {
  std::set<std::string> keys;
  for (const auto& [module, linear] : linears)
    for (const auto& e : endings)
      if (module.ends_with("." + e))
        keys.insert({nn::lora_key(module, 'A'), nn::lora_key(module, 'B')});
  return keys;
}

// The largest absolute difference between same-named tensors of two weight files.
double max_difference(const std::string& a_path, const std::string& b_path) {
  auto a = load_safetensors(a_path), b = load_safetensors(b_path);
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    const float *x = a[i].second.data<float>(), *y = b[i].second.data<float>();
    for (int64_t j = 0; j < a[i].second.numel(); ++j)
      worst = std::max(worst, double(std::abs(x[j] - y[j])));
  }
  return worst;
}

// --- The three families' tiny runs and their bases (trained once per test process). ---

train::TrainConfig translation_run(const std::string& name) {
  train::TrainConfig c;
  c.model_dir = fresh_dir(name);
  c.train_sets = {bible_pairs(300)};
  c.model.d_model = 32, c.model.heads = 2, c.model.d_ff = 64;
  c.model.encoder_layers = 1, c.model.decoder_layers = 1;
  c.model.vocab_size = 300, c.batch_tokens = 400, c.max_length = 60;
  c.warmup_steps = 4, c.learning_rate = 1e-3, c.max_updates = 8;
  c.disp_freq = 4, c.save_freq = 4, c.valid_freq = 1000, c.threads = 2;
  return c;
}

std::string small_text() {
  std::string path = temp_path("lora_text.txt");
  if (fs::exists(path)) return path;
  data::DocumentCorpus c =
      data::read_documents(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz", {"", 3});
  std::ofstream out(path);
  for (size_t i = 0; i < 200; ++i) out << c.documents[i] << "\n";
  return path;
}

train::LmTrainConfig lm_run(const std::string& name) {
  train::LmTrainConfig c;
  c.model_dir = fresh_dir(name);
  c.train_sets = {small_text()};
  c.tokenizer = "chars";
  c.model.context_length = 24, c.model.d_model = 32, c.model.layers = 2, c.model.heads = 2;
  c.batch_size = 4, c.warmup_steps = 4, c.lr_schedule = "inverse-sqrt", c.max_updates = 8;
  c.disp_freq = 4, c.save_freq = 4, c.valid_freq = 1000, c.threads = 2, c.sample_tokens = 0;
  return c;
}

train::ViTTrainConfig vit_run(const std::string& name) {
  train::ViTTrainConfig c;
  c.model_dir = fresh_dir(name);
  c.train_set = "fashion-mnist:test";
  c.valid_split = 64;
  c.model.patch_size = 7, c.model.d_model = 16, c.model.heads = 2, c.model.d_ff = 32;
  c.model.layers = 1;
  c.batch_size = 16, c.warmup_steps = 4, c.learning_rate = 3e-3, c.max_updates = 8;
  c.lr_schedule = "inverse-sqrt";
  c.disp_freq = 4, c.valid_freq = 1000, c.save_freq = 4, c.threads = 2;
  return c;
}

// A base model of each family, trained briefly (once per process).
template <class Config, class Train>
std::string base_of(const std::string& name, Config (*run)(const std::string&), Train train) {
  std::string dir = temp_path(name);
  if (!fs::exists(dir + "/model.safetensors")) train(run(name), nullptr);
  return dir;
}
std::string translation_base() {
  return base_of("base_seq2seq", translation_run, train::train_seq2seq);
}
std::string lm_base() {
  return base_of("base_gpt", lm_run, train::train_lm);
}
std::string vit_base() {
  return base_of("base_vit", vit_run, train::train_vit);
}

// A LoRA run of rank 2 on `base`.
template <class Config>
Config with_lora(Config c, const std::string& base) {
  c.init_from = base;
  c.lora.rank = 2;
  return c;
}

// What every LoRA run must leave: the adapter's files with peft's keys of exactly the targeted
// modules, adapter_config.json naming the base, no model files, and the base as it was.
void expect_adapter_dir(const std::string& dir, const std::string& base,
                        const std::set<std::string>& keys, const std::vector<std::string>& endings,
                        const std::string& task_type) {
  EXPECT_EQ(keys_of(dir + "/adapter_model.safetensors"), keys);
  for (const char* absent : {"model.safetensors", "model.best.safetensors", "config.yaml",
                             "spm.model", "tokenizer.yaml"})
    EXPECT_FALSE(fs::exists(dir + "/" + absent)) << dir << " holds " << absent;
  EXPECT_TRUE(fs::exists(dir + "/train.yaml"));
  model_dir::AdapterConfig c = model_dir::read_adapter_config(dir);
  EXPECT_EQ(c.options.rank, 2);
  EXPECT_EQ(c.options.targets, endings);
  EXPECT_EQ(c.base_model, fs::absolute(base).lexically_normal().string());
  EXPECT_EQ(c.task_type, task_type);
  // The optimizer's state is the adapter's alone.
  std::string latest = read_text(dir + "/checkpoint/latest");
  latest.pop_back();
  for (const auto& key : keys_of(dir + "/checkpoint/" + latest + "/optimizer.safetensors"))
    EXPECT_NE(key.find(".lora_"), std::string::npos) << key << " has optimizer state";
  // Training moved B away from its zeros.
  for (const auto& [name, t] : load_safetensors(dir + "/adapter_model.safetensors"))
    if (name.ends_with("lora_B.weight")) {
      double norm = 0;
      for (int64_t i = 0; i < t.numel(); ++i) norm += std::abs(t.data<float>()[i]);
      EXPECT_GT(norm, 0) << name << " did not train";
    }
}

TEST(TrainLora, TranslationAdapterCoversOnlyItsTargetsAndLeavesTheBase) {
  std::string base = translation_base();
  auto before = snapshot(base);
  train::TrainConfig c = with_lora(translation_run("lora_seq2seq"), base);
  c.valid_sets = {bible_pairs(300)}, c.valid_max_sentences = 3, c.valid_freq = 4;
  EXPECT_EQ(train::train_seq2seq(c), 8);
  EXPECT_EQ(changed_files(snapshot(base), before), std::vector<std::string>{});
  model_dir::TranslationModel m = model_dir::load_translation_dir(base);
  expect_adapter_dir(c.model_dir, base, lora_keys(m.model->linears(), {"q_proj", "v_proj"}),
                     {"q_proj", "v_proj"}, "SEQ_2_SEQ_LM");
  EXPECT_TRUE(fs::exists(c.model_dir + "/adapter_model.best.safetensors"));
  // The adapter loads onto its base (the checksum it records is the base's).
  nn::LoraAdapter a = model_dir::load_adapter(c.model_dir, "best", m.model->linears(), base,
                                              nn::weights_checksum(m.model->params()));
  EXPECT_EQ(a.modules.size(), 6u);  // q and v of encoder self, decoder self and cross attention
}

TEST(TrainLora, VitAdapterCoversOnlyItsTargetsAndLeavesTheBase) {
  std::string base = vit_base();
  auto before = snapshot(base);
  train::ViTTrainConfig c = with_lora(vit_run("lora_vit"), base);
  c.valid_freq = 4;
  EXPECT_EQ(train::train_vit(c), 8);
  EXPECT_EQ(changed_files(snapshot(base), before), std::vector<std::string>{});
  auto m = model_dir::load_vit_dir(base);
  expect_adapter_dir(c.model_dir, base, lora_keys(m->linears(), {"query", "value"}),
                     {"query", "value"}, "");
}

TEST(TrainLora, GptAdapterCoversOnlyItsTargetsAndLeavesTheBase) {
  std::string base = lm_base();
  auto before = snapshot(base);
  train::LmTrainConfig c = with_lora(lm_run("lora_gpt"), base);
  c.lora.targets = {"o_proj,up_proj"};
  c.valid_sets = {small_text()}, c.valid_max_tokens = 500, c.valid_freq = 4;
  EXPECT_EQ(train::train_lm(c), 8);
  EXPECT_EQ(changed_files(snapshot(base), before), std::vector<std::string>{});
  model_dir::LanguageModel m = model_dir::load_language_model_dir(base);
  expect_adapter_dir(c.model_dir, base, lora_keys(m.model->linears(), {"o_proj", "up_proj"}),
                     {"o_proj", "up_proj"}, "CAUSAL_LM");
}

// N updates in one run equal N/2, then a resumed run to N: identical adapter tensors.
template <class Config, class Train>
void expect_exact_resume(Config straight, Config broken, Train train) {
  EXPECT_EQ(train(straight, nullptr), 8);
  broken.max_updates = 4;
  EXPECT_EQ(train(broken, nullptr), 4);
  broken.max_updates = 8;
  EXPECT_EQ(train(broken, nullptr), 8);
  expect_same_tensors(straight.model_dir + "/adapter_model.safetensors",
                      broken.model_dir + "/adapter_model.safetensors");
}

TEST(TrainLora, ResumedRunEqualsUnbrokenRunInEveryFamily) {
  auto dropout = [](auto c) {  // the LoRA dropout's RNG resumes too
    c.lora.dropout = 0.1f;
    return c;
  };
  std::string t = translation_base(), v = vit_base(), g = lm_base();
  expect_exact_resume(dropout(with_lora(translation_run("resume_t1"), t)),
                      dropout(with_lora(translation_run("resume_t2"), t)), train::train_seq2seq);
  expect_exact_resume(dropout(with_lora(vit_run("resume_v1"), v)),
                      dropout(with_lora(vit_run("resume_v2"), v)), train::train_vit);
  expect_exact_resume(dropout(with_lora(lm_run("resume_g1"), g)),
                      dropout(with_lora(lm_run("resume_g2"), g)), train::train_lm);
}

// A full fine-tune whose one update barely moves anything: its weights are the base's.
template <class Config, class Train>
void expect_full_fine_tune_from(Config c, const std::string& base, Train train) {
  c.init_from = base;
  c.max_updates = 1, c.learning_rate = 1e-12;
  EXPECT_EQ(train(c, nullptr), 1);
  EXPECT_LT(
      max_difference(c.model_dir + "/model.safetensors", model_dir::weights_path(base, "best")),
      1e-6);
  EXPECT_FALSE(fs::exists(c.model_dir + "/adapter_config.json"));
  // The model directory is a complete one, with the base's config (its shape) and tokenizer.
  EXPECT_EQ(model_dir::family(c.model_dir), model_dir::family(base));
  for (const char* file : {"spm.model", "tokenizer.yaml"})
    if (fs::exists(base + "/" + file)) {
      EXPECT_EQ(read_text(c.model_dir + "/" + file), read_text(base + "/" + file)) << file;
    }
}

TEST(TrainLora, FullFineTuneStartsFromTheBaseInEveryFamily) {
  std::string t = translation_base(), v = vit_base(), g = lm_base();
  train::TrainConfig tc = translation_run("full_t");
  tc.model.d_model = 64;  // shape options are ignored: the base's shape is kept
  expect_full_fine_tune_from(tc, t, train::train_seq2seq);
  EXPECT_EQ(model_dir::load_translation_dir(tc.model_dir).model->config().d_model, 32);
  expect_full_fine_tune_from(vit_run("full_v"), v, train::train_vit);
  EXPECT_NO_THROW(model_dir::load_vit_dir(temp_path("full_v")));
  expect_full_fine_tune_from(lm_run("full_g"), g, train::train_lm);
  EXPECT_NO_THROW(model_dir::load_language_model_dir(temp_path("full_g")));
}

TEST(TrainLora, TheFrozenBaseGetsNoGradients) {
  model_dir::LanguageModel m = model_dir::load_language_model_dir(lm_base());
  train::LmTrainConfig c = with_lora(lm_run("grad"), lm_base());
  train::LoraRun run = train::start_lora(c, c.model_dir, m.model->params(), m.model->linears(),
                                         {"q_proj", "v_proj"});
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{5, 6, 7, 8, 9, 10}, {2, 3});
  Tape tape;
  Var loss;
  {
    Recording rec(tape);
    loss = eval::lm_loss_sum(*m.model, ids, ids, 0.f, nn::Context{});
  }
  tape.backward(loss);
  for (const auto& [name, v] : m.model->params()) EXPECT_FALSE(v.has_grad()) << name;
  for (const auto& [name, v] : run.adapter.params())
    if (name.ends_with("lora_B.weight")) {
      EXPECT_TRUE(v.has_grad()) << name;
    }
}

// Expects run() to throw a message holding every part, leaving `dir` as it was (or absent).
void expect_refused(const std::function<void()>& run, const std::vector<std::string>& parts,
                    const std::string& dir) {
  bool existed = fs::exists(dir);
  auto before = existed ? snapshot(dir) : std::map<std::string, std::string>{};
  try {
    run();
    ADD_FAILURE() << "accepted; expected an error naming " << parts.at(0);
  } catch (const std::exception& e) {
    for (const auto& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << e.what() << " lacks " << part;
  }
  EXPECT_EQ(fs::exists(dir), existed) << dir;
  if (existed) {
    EXPECT_EQ(changed_files(snapshot(dir), before), std::vector<std::string>{})
        << dir << " changed";
  }
}

TEST(TrainLora, BadInputIsRefusedWritingNothing) {
  std::string base = lm_base();
  auto base_files = snapshot(base);
  train::LmTrainConfig c = with_lora(lm_run("bad"), base);
  auto run_with = [&](auto edit) {
    return [c, edit]() mutable {
      edit(c);
      train::train_lm(c);
    };
  };
  expect_refused(run_with([](auto& x) { x.lora.targets = {"q_proj,qq_proj"}; }),
                 {"qq_proj", "o_proj"}, c.model_dir);
  expect_refused(run_with([](auto& x) { x.lora.rank = 33; }), {"lora-rank 33", "at most 32"},
                 c.model_dir);
  expect_refused(run_with([](auto& x) { x.init_from = ""; }), {"lora-rank needs init-from"},
                 c.model_dir);
  expect_refused(run_with([](auto& x) { x.init_from = temp_path("no_such_model"); }),
                 {temp_path("no_such_model")}, c.model_dir);
  expect_refused(run_with([&](auto& x) { x.model_dir = base; }), {base, "another directory"}, base);
  expect_refused(run_with([&](auto& x) { x.init_from = translation_base(); }),
                 {translation_base(), "seq2seq", "gpt"}, c.model_dir);
  // LoRA into a full model's directory, and full training into an adapter's.
  expect_refused(run_with([&](auto& x) { x.model_dir = vit_base(); }), {vit_base(), "config.yaml"},
                 vit_base());
  EXPECT_EQ(changed_files(snapshot(base), base_files), std::vector<std::string>{});
}

TEST(TrainLora, ResumingOnAnotherBaseNamesBoth) {
  std::string base = lm_base();
  train::LmTrainConfig c = with_lora(lm_run("other_base"), base);
  c.max_updates = 4;
  train::train_lm(c);
  // Another base: the first one fine-tuned for an update.
  train::LmTrainConfig other = lm_run("base_gpt_tuned");
  other.init_from = base, other.max_updates = 1;
  train::train_lm(other);
  c.init_from = other.model_dir, c.max_updates = 8;
  expect_refused([&] { train::train_lm(c); },
                 {c.model_dir, fs::absolute(base).lexically_normal().string(), other.model_dir},
                 c.model_dir);
  // The adapter's directory is no place for a full run.
  train::LmTrainConfig full = lm_run("full_into_adapter");
  full.model_dir = c.model_dir, full.init_from = base;
  expect_refused([&] { train::train_lm(full); }, {c.model_dir, "adapter_config.json"}, c.model_dir);
}

TEST(TrainLora, CommandLineFlags) {
  std::string base = lm_base(), dir = fresh_dir("cli_lora");
  std::string common = " --model-dir " + dir + " --train-sets " + small_text() +
                       " --context-length 24 --batch-size 4 --max-updates 2 --threads 2"
                       " --sample-tokens 0";
  CliResult r = run_qkv("train-lm --lora-rank 2" + common);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("lora-rank needs init-from"), std::string::npos) << r.err;
  r = run_qkv("train-lm --init-from " + base +
              " --lora-rank 2 --lora-alpha 8 --lora-rslora true --lora-dropout 0.05"
              " --lora-targets all-linear" +
              common);
  ASSERT_EQ(r.status, 0) << r.err;
  nn::LinearList linears = model_dir::load_language_model_dir(base).model->linears();
  EXPECT_NE(r.err.find("LoRA rank 2 on " + std::to_string(linears.size()) + " modules"),
            std::string::npos)
      << r.err;
  std::set<std::string> endings;
  for (const auto& [module, linear] : linears) endings.insert(module.substr(module.rfind('.') + 1));
  nlohmann::json j = nlohmann::json::parse(read_text(dir + "/adapter_config.json"));
  EXPECT_EQ(j["r"], 2);
  EXPECT_EQ(j["lora_alpha"], 8);
  EXPECT_EQ(j["use_rslora"], true);
  EXPECT_EQ(j["target_modules"].get<std::set<std::string>>(), endings);
  EXPECT_EQ(keys_of(dir + "/adapter_model.safetensors").size(), 2 * linears.size());
}

}  // namespace
}  // namespace qkv::test
