// Translation speed: greedy and beam search (decode::search, KV-cached) on random source ids,
// every output exactly tgt_len tokens long (min_length = tgt_len, then the forced <eos>), on the
// cpu or on cuda (f32, or bf16 products in an AutocastScope around each search; the sgemm
// yardstick after each run on the cpu only). On the cpu each case runs in every compute type
// asked for (named with a suffix: greedy_b32_int8), with its speed over f32's and the share of
// its tokens equal to f32's. With --model-dir, writes what torch_bench.py needs
// to run the same model on the same input:
// weights.safetensors, config.json, sources.safetensors, and qkv's outputs for comparison.
#include <filesystem>
#include <fstream>
#include <map>

#include "benchmarks.h"
#include "decode/search.h"
#include "io/safetensors.h"
#include "nn/packed_linear.h"
#include "ops/compute_type.h"
#include "ops/precision.h"

namespace qkv::bench {

namespace {
void save_model(const std::string& dir, const nn::Seq2Seq& model, const Tensor& src) {
  std::filesystem::create_directories(dir);
  save_safetensors(dir + "/weights.safetensors", nn::param_tensors(model.params()));
  save_safetensors(dir + "/sources.safetensors", {{"src", src}});
  std::ofstream(dir + "/config.json") << config_json(model.config()).dump(2) << "\n";
}

// The best hypothesis of each sentence, i32 [B, tgt_len].
Tensor best_tokens(const std::vector<std::vector<decode::Hypothesis>>& hyps, int64_t tgt_len) {
  Tensor out = filled_i32({int64_t(hyps.size()), tgt_len}, -1);
  for (size_t b = 0; b < hyps.size(); ++b) {
    const auto& t = hyps[b].at(0).tokens;
    for (size_t i = 0; i < t.size() && int64_t(i) < tgt_len; ++i)
      out.data<int32_t>()[int64_t(b) * tgt_len + int64_t(i)] = t[i];
  }
  return out;
}

// One timed search: its name ("greedy_b32"), target tokens/s, and best tokens [B, tgt_len].
struct SearchRun {
  std::string name;
  Json row;
  double tokens_per_s;
  Tensor tokens;
};
SearchRun time_search(const TranslateArgs& args, const decode::PackedDecoder& weights,
                      const Tensor& src, int beam, bool cpu) {
  int64_t batch = src.size(0);
  Tensor src_lengths = filled_i32({batch}, int32_t(args.src_len));
  decode::SearchOptions o;
  o.beam = beam, o.n_best = 1;
  o.min_length = args.tgt_len, o.max_length = args.tgt_len + 1;
  decode::SearchOptions warm = o;  // a short run warms the allocator and thread pool
  warm.min_length = 2, warm.max_length = 3;
  decode::search(weights, src, src_lengths, warm);
  std::vector<std::vector<decode::Hypothesis>> hyps;
  Timing t = time_runs([&] { hyps = decode::search(weights, src, src_lengths, o); },
                       {0, args.runs, 1, args.budget_s, cpu});
  SearchRun r;
  r.name = (beam == 1 ? "greedy" : "beam" + std::to_string(beam)) + "_b" + std::to_string(batch);
  r.tokens_per_s = double(batch * args.tgt_len) / t.median();
  r.tokens = best_tokens(hyps, args.tgt_len);
  r.row = {{"name", r.name},
           {"batch", batch},
           {"beam", beam},
           {"timing", t.to_json()},
           {"target_tokens_per_s", r.tokens_per_s}};
  return r;
}

// The share of equal tokens in two [B, L] tensors.
double equal_share(const Tensor& a, const Tensor& b) {
  int64_t equal = 0;
  for (int64_t i = 0; i < a.numel(); ++i) equal += a.data<int32_t>()[i] == b.data<int32_t>()[i];
  return double(equal) / double(a.numel());
}
}  // namespace

Json bench_translate(const TranslateArgs& args) {
  nn::Seq2SeqConfig c = bench_config(args.preset, args.vocab);
  const Device device = bench_device(args.device, args.precision);
  ops::AutocastScope autocast(ops::precision_from_name(args.precision));
  nn::Seq2Seq model(c);
  Rng init_rng(args.seed);
  model.init(init_rng);
  int64_t most = *std::max_element(args.batches.begin(), args.batches.end());
  Tensor all_src = random_ids(most, args.src_len, c.vocab_size, args.seed + 10);  // [B, S]
  if (!args.model_dir.empty()) save_model(args.model_dir, model, all_src);
  model.to(device);

  Json cases = Json::array();
  NamedTensors outputs;
  std::map<std::string, SearchRun> f32_runs;  // by name
  for (const std::string& type_name : args.compute_types) {
    ops::ComputeType type = ops::compute_type_from_name(type_name);
    nn::set_compute_type(model.linears(), type);
    // Packed once, as decode::Translator (what `qkv translate` runs) does at model load.
    decode::PackedDecoder weights(model, type);
    for (int64_t batch : args.batches)
      for (int beam : args.beams) {
        SearchRun r =
            time_search(args, weights, all_src.slice_rows(0, batch), beam, device == Device::cpu);
        log_line("translate %-10s qkv %s %s %s %8.0f target tokens/s", r.name.c_str(),
                 args.device.c_str(), args.precision.c_str(), type_name.c_str(), r.tokens_per_s);
        r.row["compute_type"] = ops::compute_type_name(type);
        if (type == ops::ComputeType::f32) {
          outputs.emplace_back(r.name, r.tokens);
          f32_runs[r.name] = r;
        } else {
          if (f32_runs.count(r.name)) {
            const SearchRun& f32 = f32_runs[r.name];
            r.row["over_f32"] = r.tokens_per_s / f32.tokens_per_s;
            r.row["tokens_equal_to_f32"] = equal_share(r.tokens, f32.tokens);
          }
          r.row["name"] = r.name + "_" + type_name;
        }
        cases.push_back(r.row);
      }
  }
  nn::set_compute_type(model.linears(), ops::ComputeType::f32);
  if (!args.model_dir.empty())
    save_safetensors(args.model_dir + "/qkv_outputs.safetensors", outputs);
  return {{"preset", args.preset}, {"device", args.device},   {"precision", args.precision},
          {"vocab", c.vocab_size}, {"src_len", args.src_len}, {"tgt_len", args.tgt_len},
          {"cases", cases}};
}

}  // namespace qkv::bench
