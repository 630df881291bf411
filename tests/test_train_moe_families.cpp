// Mixture-of-Experts layers in the translation encoder/decoder and in ViT (nn/moe.h): NLLB-MoE
// parameter names, LoRA targets that reach the experts (and train there), the packed decoder's MoE
// step against teacher forcing, greedy and beam search against teacher-forced log-probabilities, a
// decoding loop that stops calling the system allocator, and the built `qkv` training
// (metrics.jsonl reports the routing), resuming exactly, translating, classifying and refusing
// impossible MoE options before it writes anything.
#include <gtest/gtest.h>
#include <stb_image_write.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "data/corpus.h"
#include "decode/incremental.h"
#include "decode/search.h"
#include "io/safetensors.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"
#include "nn/lora.h"
#include "nn/vit.h"
#include "support/cli_run.h"
#include "support/training_checks.h"
#include "tensor/allocator.h"
#include "train/trainer.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

nn::MoeOptions four_experts_every_second_layer() {
  nn::MoeOptions m;
  m.experts = 4, m.top_k = 2, m.every = 2;
  return m;
}

nn::Seq2SeqConfig tiny_moe_config(int64_t vocab) {
  nn::Seq2SeqConfig c;
  c.vocab_size = vocab, c.d_model = 16, c.heads = 2, c.d_ff = 24;
  c.encoder_layers = 2, c.decoder_layers = 2, c.dropout = 0.f, c.max_positions = 32;
  c.moe = four_experts_every_second_layer();
  return c;
}

// A model with random weights, its output bias far from uniform (so that ties are unlikely).
std::unique_ptr<nn::Seq2Seq> random_model(const nn::Seq2SeqConfig& c, uint64_t seed) {
  auto m = std::make_unique<nn::Seq2Seq>(c);
  Rng rng(seed);
  m->init(rng);
  for (auto& [name, v] : m->params())
    if (name == "final_logits_bias") Var(v).mutable_value().copy_from(randn(v.shape(), rng, 2.f));
  return m;
}

Tensor ids(const std::vector<int32_t>& v, const Shape& s) {
  return Tensor::from_vector(v, s);
}

std::map<std::string, Shape> shapes_of(const nn::ParamList& params) {
  std::map<std::string, Shape> out;
  for (const auto& [name, v] : params) out[name] = v.shape();
  return out;
}

TEST(MoeFamilies, TranslationMoeLayersHaveNllbMoeNames) {
  nn::Seq2Seq model(tiny_moe_config(40));
  auto shapes = shapes_of(model.params());
  for (std::string stack : {"model.encoder.layers.", "model.decoder.layers."}) {
    // Layer 0 is dense, layer 1 (the second) MoE.
    EXPECT_EQ(shapes.at(stack + "0.fc1.weight"), (Shape{24, 16}));
    EXPECT_EQ(shapes.count(stack + "0.ffn.router.classifier.weight"), 0u);
    EXPECT_EQ(shapes.count(stack + "1.fc1.weight"), 0u);
    EXPECT_EQ(shapes.at(stack + "1.ffn.router.classifier.weight"), (Shape{4, 16}));
    EXPECT_EQ(shapes.count(stack + "1.ffn.router.classifier.bias"), 0u);
    for (int e = 0; e < 4; ++e) {
      std::string p = stack + "1.ffn.experts.expert_" + std::to_string(e);
      EXPECT_EQ(shapes.at(p + ".fc1.weight"), (Shape{24, 16})) << p;
      EXPECT_EQ(shapes.at(p + ".fc1.bias"), (Shape{24})) << p;
      EXPECT_EQ(shapes.at(p + ".fc2.weight"), (Shape{16, 24})) << p;
      EXPECT_EQ(shapes.at(p + ".fc2.bias"), (Shape{16})) << p;
    }
    EXPECT_EQ(shapes.count(stack + "1.ffn.experts.expert_4.fc1.weight"), 0u);
  }
  // Dropout on the experts' hidden activations, as the dense feed-forward has.
  EXPECT_TRUE(model.decoder_layers()[1].moe.hidden_dropout);
  EXPECT_FALSE(model.decoder_layers()[0].is_moe());
  // LoRA's "fc1" reaches the dense layers' and every expert's (not the routers).
  std::vector<std::string> fc1 = nn::match_lora_targets(model.linears(), {"fc1"});
  std::vector<std::string> want;
  for (std::string stack : {"model.encoder.layers.", "model.decoder.layers."}) {
    want.push_back(stack + "0.fc1");
    for (int e = 0; e < 4; ++e)
      want.push_back(stack + "1.ffn.experts.expert_" + std::to_string(e) + ".fc1");
  }
  EXPECT_EQ(fc1, want);
  EXPECT_THROW(nn::match_lora_targets(model.linears(), {"classifier"}), std::invalid_argument);
}

TEST(MoeFamilies, PackedMoeDecoderStepsEqualTeacherForcing) {
  nn::Seq2SeqConfig c = tiny_moe_config(23);
  c.moe.every = 1;  // both decoder layers MoE
  for (bool pre_norm : {false, true}) {
    c.pre_norm = pre_norm;
    auto model = random_model(c, 3);
    Tensor src = ids({5, 6, 7, 8, 9, 10, 11, 4, 5, 6, 0, 0}, {2, 6}), src_len = ids({6, 4}, {2});
    Tensor tgt = ids({2, 9, 4, 13, 7, 2, 6, 6, 12, 5}, {2, 5});
    nn::Context ctx;
    Var memory = model->encode(src, src_len, ctx);
    Tensor full = model->logits(model->decode(tgt, memory, src_len, ctx)).value();  // [2, 5, V]
    decode::PackedDecoder weights(*model);
    decode::IncrementalDecoder dec(weights, memory, src_len, 8);
    for (int64_t t = 0; t < 5; ++t) {
      Tensor logits = dec.step(ids({tgt.data<int32_t>()[t], tgt.data<int32_t>()[5 + t]}, {2}));
      for (int64_t b = 0; b < 2; ++b) {
        Tensor want = full.slice_rows(b, b + 1).reshape({5, 23}).slice_rows(t, t + 1).reshape({23});
        expect_close(logits.slice_rows(b, b + 1).reshape({23}), want, 1e-5,
                     "pre-norm " + std::to_string(pre_norm) + " step " + std::to_string(t) +
                         " row " + std::to_string(b));
      }
    }
  }
}

// As dense layers (tests/test_decode.cpp): routing on the host draws its index tensors from the
// caching allocator too.
TEST(MoeFamilies, MoeDecodingLoopStopsCallingTheSystemAllocator) {
  auto model = random_model(tiny_moe_config(29), 5);
  Tensor src = ids({5, 6, 7, 8, 9, 10}, {2, 3}), len = ids({3, 3}, {2});
  nn::Context ctx;
  Var memory = model->encode(src, len, ctx);
  decode::PackedDecoder weights(*model);
  decode::IncrementalDecoder dec(weights, memory, len, 32);
  Tensor tokens = ids({2, 2}, {2});
  for (int i = 0; i < 3; ++i) dec.step(tokens);  // warm-up
  size_t before = allocator_for(Device::cpu).stats().system_allocations;
  for (int i = 0; i < 20; ++i) dec.step(tokens);
  EXPECT_EQ(allocator_for(Device::cpu).stats().system_allocations, before);
}

// Total log-probability of `tokens` + <eos> given src, by teacher forcing.
double sequence_log_prob(const nn::Seq2Seq& m, const Tensor& src, const Tensor& len,
                         const std::vector<int32_t>& tokens) {
  const auto& c = m.config();
  std::vector<int32_t> in{c.bos_id}, out = tokens;
  in.insert(in.end(), tokens.begin(), tokens.end());
  out.push_back(c.eos_id);
  int64_t t = int64_t(in.size());
  nn::Context ctx;
  Tensor logits = m.forward(src, len, ids(in, {1, t}), ctx).value().reshape({t, c.vocab_size});
  Tensor lp = ops::log_softmax_forward(logits);
  double sum = 0;
  for (int64_t i = 0; i < t; ++i) sum += lp.data<float>()[i * c.vocab_size + out[i]];
  return sum;
}

TEST(MoeFamilies, GreedyAndBeamSearchScoreWhatTeacherForcingScores) {
  auto model = random_model(tiny_moe_config(19), 7);
  Tensor src = ids({5, 6, 7, 8, 9, 10, 11, 12}, {2, 4}), len = ids({4, 3}, {2});
  for (int beam : {1, 3}) {
    decode::SearchOptions o;
    o.beam = beam, o.n_best = beam, o.max_length = 6;
    auto hyps = decode::search(*model, src, len, o);
    ASSERT_EQ(hyps.size(), 2u);
    int compared = 0;
    for (int64_t b = 0; b < 2; ++b) {
      ASSERT_FALSE(hyps[size_t(b)].empty()) << "beam " << beam;
      for (const auto& h : hyps[size_t(b)]) {
        if (h.tokens.size() == 6) continue;  // cut at max-length: no <eos> scored
        EXPECT_NEAR(
            h.log_prob,
            sequence_log_prob(*model, src.slice_rows(b, b + 1), len.slice_rows(b, b + 1), h.tokens),
            1e-4)
            << "beam " << beam << " sentence " << b;
        ++compared;
      }
    }
    EXPECT_EQ(compared, 2 * beam) << "hypotheses cut at max-length";
  }
}

nn::ViTConfig tiny_moe_vit() {
  nn::ViTConfig c;
  c.image_size = 8, c.patch_size = 4, c.d_model = 16, c.heads = 2, c.d_ff = 24, c.layers = 2;
  c.classes = {"a", "b", "c"};
  c.moe = four_experts_every_second_layer();
  return c;
}

TEST(MoeFamilies, ViTMoeLayersKeepNllbNamesUnderHuggingFaceLayers) {
  nn::ViT model(tiny_moe_vit());
  auto shapes = shapes_of(model.params());
  EXPECT_EQ(shapes.at("vit.encoder.layer.0.intermediate.dense.weight"), (Shape{24, 16}));
  EXPECT_EQ(shapes.count("vit.encoder.layer.1.intermediate.dense.weight"), 0u);
  EXPECT_EQ(shapes.at("vit.encoder.layer.1.ffn.router.classifier.weight"), (Shape{4, 16}));
  EXPECT_EQ(shapes.at("vit.encoder.layer.1.ffn.experts.expert_3.fc1.bias"), (Shape{24}));
  EXPECT_EQ(shapes.at("vit.encoder.layer.1.ffn.experts.expert_3.fc2.weight"), (Shape{16, 24}));
  EXPECT_EQ(shapes.at("vit.encoder.layer.1.layernorm_after.weight"), (Shape{16}));
  std::vector<std::string> fc1 = nn::match_lora_targets(model.linears(), {"fc1"});
  ASSERT_EQ(fc1.size(), 4u);
  EXPECT_EQ(fc1[0], "vit.encoder.layer.1.ffn.experts.expert_0.fc1");
  EXPECT_EQ(nn::match_lora_targets(model.linears(), {"intermediate.dense"}),
            std::vector<std::string>{"vit.encoder.layer.0.intermediate.dense"});

  Rng rng(1);
  model.init(rng);
  nn::MoeRecord record;
  nn::Context ctx;
  ctx.moe = &record;
  Var logits = model.forward(randn({2, 1, 8, 8}, rng), ctx);
  EXPECT_EQ(logits.shape(), (Shape{2, 3}));
  ASSERT_EQ(record.layers.size(), 1u);
  EXPECT_EQ(record.layers[0].assignments, 2 * 5 * 2);  // 2 images of 4 patches + class token, k 2
}

std::string fresh_dir(const std::string& name) {
  std::string dir = temp_path(name);
  fs::remove_all(dir);
  return dir;
}

// The first n pairs of the bundled dev corpus as a TSV file.
std::string small_corpus(size_t n) {
  std::string path = temp_path("moe-corpus-" + std::to_string(n) + ".tsv");
  if (fs::exists(path)) return path;
  data::ParallelCorpus c =
      data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz");
  std::ofstream out(path);
  for (size_t i = 0; i < n; ++i) out << "r\t" << c.src[i] << "\t" << c.tgt[i] << "\n";
  return path;
}

const char* kTinyShape =
    " --d-model 16 --heads 2 --d-ff 24 --encoder-layers 2 --decoder-layers 2 --vocab-size 200"
    " --max-positions 40 --max-length 39 --batch-tokens 300 --threads 2";

// The update events of <dir>/metrics.jsonl.
std::vector<nlohmann::json> update_events(const std::string& dir) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : lines_of(read_text(dir + "/metrics.jsonl"))) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("event", "") == "update") out.push_back(j);
  }
  return out;
}

// Each update event reports the MoE losses, dropped tokens and one load list per MoE layer
// (`layers`), each expert's share of the choices (together 1).
void expect_moe_metrics(const std::string& dir, size_t layers) {
  std::vector<nlohmann::json> updates = update_events(dir);
  ASSERT_FALSE(updates.empty()) << read_text(dir + "/metrics.jsonl");
  for (const nlohmann::json& j : updates) {
    ASSERT_TRUE(j.contains("moe_aux_loss") && j.contains("moe_z_loss")) << j.dump();
    EXPECT_GT(j.at("moe_aux_loss").get<double>(), 0.0) << j.dump();
    EXPECT_GE(j.at("moe_dropped").get<double>(), 0.0) << j.dump();
    ASSERT_EQ(j.at("moe_load").size(), layers) << j.dump();
    for (const nlohmann::json& load : j.at("moe_load")) {
      ASSERT_EQ(load.size(), 4u) << j.dump();
      double total = 0;
      for (const nlohmann::json& share : load) total += share.get<double>();
      EXPECT_NEAR(total, 1.0, 1e-5) << j.dump();
    }
  }
}

TEST(MoeFamilies, CommandLineTrainsAndTranslatesATranslationMoeModel) {
  std::string dir = fresh_dir("moe-translation"), corpus = small_corpus(200);
  CliResult train = run_qkv("train --model-dir " + dir + " --train-sets " + corpus +
                            " --valid-sets " + corpus + kTinyShape +
                            " --moe-experts 4 --moe-top-k 2 --moe-every 2 --max-updates 4"
                            " --disp-freq 2 --valid-freq 4 --valid-max-sentences 4");
  ASSERT_EQ(train.status, 0) << train.err;
  expect_moe_metrics(dir, 2);  // encoder layer 1, decoder layer 1
  EXPECT_NE(train.err.find("MoE aux "), std::string::npos) << train.err;
  EXPECT_NE(read_text(dir + "/metrics.jsonl").find("MoE routing since the last validation"),
            std::string::npos);

  // config.yaml keeps the experts, so every command rebuilds the same model.
  nn::Seq2SeqConfig saved = model_dir::read_seq2seq_config(dir + "/config.yaml");
  EXPECT_EQ(saved.moe.experts, 4);
  EXPECT_EQ(saved.moe.top_k, 2);
  EXPECT_EQ(saved.moe.every, 2);
  std::set<std::string> names;
  for (const auto& [name, t] : load_safetensors(dir + "/model.safetensors")) names.insert(name);
  EXPECT_TRUE(names.count("model.decoder.layers.1.ffn.experts.expert_3.fc2.bias"));

  CliResult greedy = run_qkv("translate --model-dir " + dir, "En el principio.\nY dijo Dios.\n");
  ASSERT_EQ(greedy.status, 0) << greedy.err;
  EXPECT_EQ(lines_of(greedy.out).size(), 2u) << greedy.out;
  CliResult beam = run_qkv("translate --model-dir " + dir + " --beam 3 --n-best 2", "uno\n");
  ASSERT_EQ(beam.status, 0) << beam.err;
  EXPECT_EQ(lines_of(beam.out).size(), 2u) << beam.out;
  std::string pairs = temp_path("moe-pairs.tsv");
  std::ofstream(pairs) << "a\tEn el principio.\tIn the beginning.\n";
  CliResult score = run_qkv("score --model-dir " + dir + " --input " + pairs);
  ASSERT_EQ(score.status, 0) << score.err;
  EXPECT_LT(std::stod(score.out), 0.0) << score.out;

  // MarianMTModel has no experts: exporting is a named error, not a folder missing them.
  CliResult to_hf = run_qkv("convert --from qkv " + dir + " --to hf " + dir + "-hf");
  EXPECT_NE(to_hf.status, 0);
  EXPECT_NE(to_hf.err.find("moe-experts 4"), std::string::npos) << to_hf.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "-hf/model.safetensors"));
}

train::TrainConfig tiny_moe_training(const std::string& dir) {
  train::TrainConfig c;
  c.model_dir = dir;
  c.train_sets = {small_corpus(200)};
  c.model.d_model = 16, c.model.heads = 2, c.model.d_ff = 24;
  c.model.encoder_layers = 2, c.model.decoder_layers = 2;
  c.model.vocab_size = 200, c.batch_tokens = 300, c.max_length = 60;
  c.model.moe = four_experts_every_second_layer();
  c.model.moe.capacity_factor = 1.0;  // some tokens dropped
  c.moe_loss.jitter = 0.1;            // router noise drawn from the checkpointed RNG
  c.warmup_steps = 4, c.learning_rate = 1e-3, c.dropout = 0.1f;
  c.disp_freq = 2, c.save_freq = 4, c.valid_freq = 1000, c.threads = 2;
  return c;
}

TEST(MoeFamilies, ResumedTranslationMoeRunEqualsUnbrokenRun) {
  train::TrainConfig straight = tiny_moe_training(fresh_dir("moe-straight"));
  straight.max_updates = 8;
  EXPECT_EQ(train::train_seq2seq(straight), 8);

  train::TrainConfig broken = tiny_moe_training(fresh_dir("moe-broken"));
  broken.max_updates = 4;
  EXPECT_EQ(train::train_seq2seq(broken), 4);
  broken.max_updates = 8;
  EXPECT_EQ(train::train_seq2seq(broken), 8);

  expect_same_weights(straight.model_dir, broken.model_dir);
  double dropped = 0;
  for (const nlohmann::json& j : update_events(straight.model_dir))
    dropped += j.at("moe_dropped").get<double>();
  EXPECT_GT(dropped, 0.0) << "capacity factor 1 dropped no token";
}

// A LoRA run on "fc1" trains adapters of the dense layers' fc1 and of every expert's; the
// packed decoder runs them (translate --adapter).
TEST(MoeFamilies, LoraOnFc1TrainsEveryExpertsAdapter) {
  train::TrainConfig base = tiny_moe_training(fresh_dir("moe-lora-base"));
  base.max_updates = 2;
  train::train_seq2seq(base);
  train::TrainConfig lora = tiny_moe_training(fresh_dir("moe-lora"));
  lora.init_from = base.model_dir;
  lora.lora.rank = 2, lora.lora.targets = {"fc1"};
  lora.max_updates = 2;
  EXPECT_EQ(train::train_seq2seq(lora), 2);
  std::set<std::string> keys, want;
  for (const auto& [name, t] : load_safetensors(lora.model_dir + "/adapter_model.safetensors"))
    keys.insert(name);
  nn::Seq2Seq shape(model_dir::read_seq2seq_config(base.model_dir + "/config.yaml"));
  for (const std::string& module : nn::match_lora_targets(shape.linears(), {"fc1"}))
    want.insert({nn::lora_key(module, 'A'), nn::lora_key(module, 'B')});
  EXPECT_EQ(want.size(), 2u * 2u * 5u);  // A and B of 2 stacks' dense fc1 and 4 experts' fc1
  EXPECT_EQ(keys, want);
  CliResult r = run_qkv(
      "translate --model-dir " + base.model_dir + " --adapter " + lora.model_dir + " --beam 2",
      "En el principio.\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 1u) << r.out;
}

// ROOT/dark and ROOT/light: n grey 8x8 PNGs each, dark ones in [10, 70), light in [180, 240).
void write_image_folder(const std::string& root, int n) {
  for (const char* cls : {"dark", "light"}) {
    fs::create_directories(root + "/" + cls);
    for (int i = 0; i < n; ++i) {
      std::vector<uint8_t> px(64);
      for (size_t p = 0; p < px.size(); ++p)
        px[p] = uint8_t((cls[0] == 'd' ? 10 : 180) + (p * 7 + size_t(i) * 13) % 60);
      std::string path = root + "/" + cls + "/" + std::to_string(i) + ".png";
      ASSERT_TRUE(stbi_write_png(path.c_str(), 8, 8, 1, px.data(), 8));
    }
  }
}

TEST(MoeFamilies, CommandLineTrainsAndClassifiesWithAViTMoeModel) {
  std::string root = fresh_dir("moe-vit");
  write_image_folder(root + "/train", 12);
  std::string model = root + "/model";
  CliResult train = run_qkv(
      "train-vit --model-dir " + model + " --train-set " + root + "/train --valid-split 4" +
      " --channels 1 --image-size 8 --patch-size 4 --d-model 16 --heads 2 --d-ff 24 --layers 2" +
      " --moe-experts 4 --moe-top-k 1 --moe-every 1 --moe-capacity-factor 1.5" +
      " --batch-size 8 --max-updates 4 --warmup-steps 2 --valid-freq 4 --disp-freq 2 --threads 2");
  ASSERT_EQ(train.status, 0) << train.err;
  expect_moe_metrics(model, 2);
  EXPECT_EQ(model_dir::read_vit_config(model + "/config.yaml").moe.experts, 4);
  CliResult classify =
      run_qkv("classify --model-dir " + model + " -k 2 " + root + "/train/dark/0.png");
  ASSERT_EQ(classify.status, 0) << classify.err;
  EXPECT_EQ(lines_of(classify.out).size(), 3u) << classify.out;
  CliResult to_hf = run_qkv("convert --from qkv " + model + " --to hf " + root + "/hf");
  EXPECT_NE(to_hf.status, 0);
  EXPECT_NE(to_hf.err.find("moe-experts 4"), std::string::npos) << to_hf.err;
}

TEST(MoeFamilies, MoreTopKThanExpertsIsANamedErrorBeforeAnythingIsWritten) {
  std::string dir = fresh_dir("moe-bad");
  CliResult translation =
      run_qkv("train --model-dir " + dir + " --train-sets " + small_corpus(200) + kTinyShape +
              " --moe-experts 4 --moe-top-k 5");
  EXPECT_NE(translation.status, 0);
  EXPECT_NE(translation.err.find("moe-top-k must be in [1, moe-experts = 4], got 5"),
            std::string::npos)
      << translation.err;
  EXPECT_FALSE(fs::exists(dir));
  CliResult vit = run_qkv("train-vit --model-dir " + dir + " --train-set " +
                          temp_path("no-images") + " --layers 2 --moe-experts 2 --moe-every 3");
  EXPECT_NE(vit.status, 0);
  EXPECT_NE(vit.err.find("moe-every 3 is more than the 2 layers"), std::string::npos) << vit.err;
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace qkv::test
