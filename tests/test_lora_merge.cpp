// A LoRA adapter applied unmerged equals the same adapter merged into the base (nn::merge_lora)
// for every family: the outputs of Seq2Seq, ViT and Gpt (swiglu + rope + grouped-query
// attention, and learned positions + gelu) with an adapter on the attention's query and value
// and on all-linear, within 1e-5 (max |got - want| over max |want|); the packed inference path
// (PackedLinear over q, k, v with updates on q and v only, Gpt::step with a KV cache, greedy and
// beam search of a translation model) gives what the merged model gives. Each adapter has a
// random B (a new adapter's B is zero and would change nothing), and each check first shows
// that the adapter changes the output.
#include <gtest/gtest.h>

#include "decode/search.h"
#include "nn/gpt.h"
#include "nn/lora.h"
#include "nn/packed_linear.h"
#include "nn/seq2seq.h"
#include "nn/vit.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

// An adapter of `rank` on the modules `targets` names, with a random B.
nn::LoraAdapter trained_adapter(const nn::LinearList& linears,
                                const std::vector<std::string>& targets, int64_t rank, Rng& rng) {
  nn::LoraAdapter adapter = nn::new_lora_adapter(linears, {rank, 5, 0.f, targets, false}, rng);
  for (auto& [module, w] : adapter.modules)
    w.b.mutable_value().copy_from(randn(w.b.shape(), rng, 0.5f));
  return adapter;
}

// What `run` gives with the adapter attached equals what it gives after merging it.
template <class Model, class Run>
void expect_merged_equals_unmerged(Model& model, const std::vector<std::string>& targets, Run run,
                                   const std::string& what) {
  nn::LinearList linears = model.linears();
  Rng rng(11);
  std::vector<Tensor> base = run(model);
  nn::attach_lora(linears, trained_adapter(linears, targets, 3, rng));
  std::vector<Tensor> unmerged = run(model);
  nn::merge_lora(linears);
  for (const auto& [name, linear] : linears) EXPECT_FALSE(linear->lora) << what << " " << name;
  std::vector<Tensor> merged = run(model);
  ASSERT_EQ(merged.size(), unmerged.size());
  for (size_t i = 0; i < merged.size(); ++i) {
    std::string out = what + " output " + std::to_string(i);
    EXPECT_GT(relative_error(unmerged[i], base[i]), 1e-3) << out << ": the adapter changed nothing";
    expect_close(merged[i], unmerged[i], 1e-5, out);
  }
}

nn::Seq2SeqConfig tiny_seq2seq(bool pre_norm) {
  nn::Seq2SeqConfig c;
  c.vocab_size = 29, c.d_model = 32, c.heads = 4, c.d_ff = 64;
  c.encoder_layers = 2, c.decoder_layers = 2, c.dropout = 0.f, c.max_positions = 64;
  c.pre_norm = pre_norm;
  return c;
}

// A model whose outputs are far from uniform (so that searches do not meet near-ties).
std::unique_ptr<nn::Seq2Seq> random_seq2seq(bool pre_norm) {
  auto m = std::make_unique<nn::Seq2Seq>(tiny_seq2seq(pre_norm));
  Rng rng(3);
  m->init(rng);
  for (auto& [name, v] : m->params())
    if (name == "final_logits_bias") Var(v).mutable_value().copy_from(randn(v.shape(), rng, 2.f));
  return m;
}

TEST(LoraMerge, Seq2SeqForward) {
  Tensor src = Tensor::from_vector(std::vector<int32_t>{5, 6, 7, 8, 9, 10, 11, 4, 0, 0}, {2, 5});
  Tensor src_len = Tensor::from_vector(std::vector<int32_t>{5, 3}, {2});
  Tensor tgt = Tensor::from_vector(std::vector<int32_t>{2, 9, 4, 13, 7, 2, 6, 6, 12, 5}, {2, 5});
  auto forward = [&](nn::Seq2Seq& m) {
    return std::vector<Tensor>{m.forward(src, src_len, tgt, {}).value()};
  };
  for (bool pre_norm : {false, true})
    for (std::string targets : {"q_proj,v_proj", "all-linear"})
      expect_merged_equals_unmerged(*random_seq2seq(pre_norm), {targets}, forward,
                                    "seq2seq " + targets + (pre_norm ? " pre-norm" : ""));
}

TEST(LoraMerge, ViTForward) {
  nn::ViTConfig c;
  c.channels = 3, c.image_size = 12, c.patch_size = 4;
  c.d_model = 32, c.heads = 4, c.d_ff = 64, c.layers = 2;
  c.classes = {"a", "b", "c", "d", "e"};
  c.mean = c.stddev = {0.5f, 0.5f, 0.5f};
  Rng rng(5);
  Tensor images = Tensor::empty({3, 3, 12, 12});
  rng.uniform(images, 0.f, 255.f);
  auto forward = [&](nn::ViT& m) { return std::vector<Tensor>{m.forward(images, {}).value()}; };
  for (std::string targets : {"query,value", "all-linear"}) {
    nn::ViT model(c);
    model.init(rng);
    expect_merged_equals_unmerged(model, {targets}, forward, "vit " + targets);
  }
}

nn::GptConfig small_gpt(const std::string& preset) {
  nn::GptConfig c = nn::GptConfig::preset(preset);
  c.vocab_size = 37, c.context_length = 16, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.d_ff = 48;
  if (c.kv_heads > 0) c.kv_heads = 2;
  return c;
}

nn::Gpt random_gpt(const std::string& preset) {
  nn::Gpt model(small_gpt(preset));
  Rng rng(7);
  model.init(rng);
  return model;
}

TEST(LoraMerge, GptForward) {
  Rng rng(8);
  Tensor ids = rand_ids({2, 9}, 37, rng);
  auto forward = [&](nn::Gpt& m) { return std::vector<Tensor>{m.forward(ids, {}).value()}; };
  for (std::string preset : {"llama-tiny", "gpt2"})  // swiglu, rope, GQA; learned, gelu
    for (std::string targets : {"q_proj,v_proj", "all-linear"}) {
      nn::Gpt model = random_gpt(preset);
      expect_merged_equals_unmerged(model, {targets}, forward, preset + " " + targets);
    }
}

TEST(LoraMerge, PackedQkvWithUpdatesOnQueryAndValueEqualsTheLinears) {
  Rng rng(9);
  nn::Linear q(16, 16), k(16, 8), v(16, 8, false);
  for (nn::Linear* l : {&q, &k, &v}) l->init(rng);
  q.bias.mutable_value().copy_from(randn({16}, rng));
  nn::LinearList linears = {{"q", &q}, {"k", &k}, {"v", &v}};
  nn::LoraAdapter adapter = trained_adapter(linears, {"q"}, 2, rng);
  adapter.modules["v"] = trained_adapter(linears, {"v"}, 3, rng).modules.at("v");  // other rank
  nn::attach_lora(linears, adapter);
  ASSERT_FALSE(k.lora);
  nn::PackedLinear packed({&q, &k, &v});
  for (const Shape& shape : {Shape{3, 16}, Shape{2, 5, 16}}) {
    Var x(randn(shape, rng));
    Tensor want = concat({q(x), k(x), v(x)}, int(shape.size()) - 1).value();
    expect_close(packed(x).value(), want, 1e-5, "packed q, k, v " + shape_str(shape));
  }
}

TEST(LoraMerge, GptStepsWithACacheAndPackedWeights) {
  Rng rng(10);
  Tensor prompt = rand_ids({2, 5}, 37, rng);
  auto steps = [&](nn::Gpt& m) {
    nn::KvCache cache = m.new_cache(2, 16);
    nn::PackedGpt packed = m.pack();
    std::vector<Tensor> logits = {m.step(prompt, {5, 3}, cache, packed)};
    for (int t = 0; t < 3; ++t)
      logits.push_back(m.step(rand_ids({2, 1}, 37, rng), {1, 1}, cache, packed));
    return logits;
  };
  for (std::string targets : {"q_proj,v_proj", "all-linear"}) {
    nn::Gpt model = random_gpt("llama-tiny");
    Rng saved = rng;  // every run steps through the same tokens
    expect_merged_equals_unmerged(
        model, {targets},
        [&](nn::Gpt& m) {
          rng = saved;
          return steps(m);
        },
        "llama step " + targets);
  }
}

TEST(LoraMerge, TranslationSearchGivesTheMergedModelsHypotheses) {
  Tensor src = Tensor::from_vector(
      std::vector<int32_t>{5, 6, 7, 8, 9, 10, 11, 20, 4, 0, 0, 0, 0, 0}, {2, 7});
  Tensor src_len = Tensor::from_vector(std::vector<int32_t>{7, 2}, {2});
  for (int beam : {1, 4}) {
    decode::SearchOptions o;
    o.beam = beam, o.n_best = beam, o.max_length = 12;
    std::vector<std::vector<std::vector<decode::Hypothesis>>> runs;  // base, unmerged, merged
    auto scores = [&](nn::Seq2Seq& m) {
      runs.push_back(decode::search(m, src, src_len, o));
      std::vector<float> out;
      for (const auto& hyps : runs.back())
        for (const auto& h : hyps) out.push_back(h.score);
      return std::vector<Tensor>{Tensor::from_vector(out, {int64_t(out.size())})};
    };
    std::string what = "beam " + std::to_string(beam);
    expect_merged_equals_unmerged(*random_seq2seq(true), {"all-linear"}, scores, what);
    ASSERT_EQ(runs.size(), 3u);
    for (size_t s = 0; s < runs[1].size(); ++s)
      for (size_t h = 0; h < runs[1][s].size(); ++h)
        EXPECT_EQ(runs[2][s][h].tokens, runs[1][s][h].tokens) << what << " sentence " << s;
  }
}

TEST(LoraMerge, AttachingReplacesTheAdapterAndDetachingRestoresTheBase) {
  nn::Gpt model = random_gpt("gpt2");
  nn::LinearList linears = model.linears();
  Rng rng(12);
  Tensor ids = rand_ids({2, 6}, 37, rng);
  Tensor base = model.forward(ids, {}).value();
  nn::LoraAdapter on_q = trained_adapter(linears, {"q_proj"}, 2, rng);
  nn::LoraAdapter on_v = trained_adapter(linears, {"v_proj"}, 2, rng);
  nn::attach_lora(linears, on_q);
  Tensor with_q = model.forward(ids, {}).value();
  nn::attach_lora(linears, on_v);  // the other adapter's updates go
  for (const auto& [name, linear] : linears)
    EXPECT_EQ(bool(linear->lora), name.ends_with("v_proj")) << name;
  nn::LoraAdapter elsewhere = on_q;
  elsewhere.modules["model.layers.0.mlp.gate_proj"] = on_q.modules.begin()->second;
  EXPECT_THROW(nn::attach_lora(linears, elsewhere), std::invalid_argument);  // gpt2 has no gate
  EXPECT_TRUE(linears[2].second->lora) << "a failed attach removed the attached adapter";
  nn::attach_lora(linears, on_q);
  expect_close(model.forward(ids, {}).value(), with_q, 0, "q adapter attached again");
  nn::detach_lora(linears);
  expect_close(model.forward(ids, {}).value(), base, 0, "detached");
  EXPECT_GT(relative_error(with_q, base), 1e-3);
}

}  // namespace
}  // namespace qkv::test
