// Translation speed on real text: the first N source sentences of a test split, translated by
// decode::Translator (tokenize, batches of --batch-tokens sorted by length, KV-cached search
// until <eos>, detokenize: what `qkv translate` runs) with a model directory of `qkv train`.
// The rate is source subwords per second. With --out-dir, writes what torch_bench.py needs to
// decode the same sentences with the same weights: config.json (the model, the search options,
// the batch size and the weights' path), sources.safetensors (the subword ids) and
// qkv_outputs.safetensors (qkv's best hypothesis per sentence, to count agreeing outputs).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "benchmarks.h"
#include "data/corpus.h"
#include "decode/translator.h"
#include "io/safetensors.h"
#include "model_dir/seq2seq_dir.h"

namespace qkv::bench {

namespace {
// Rows padded with `pad`: i32 [rows.size(), max(1, longest)], and the lengths i32 [rows.size()].
NamedTensors padded(const std::string& name, const std::vector<std::vector<int32_t>>& rows,
                    int32_t pad) {
  int64_t longest = 1;
  for (const auto& r : rows) longest = std::max(longest, int64_t(r.size()));
  Tensor ids = filled_i32({int64_t(rows.size()), longest}, pad);
  std::vector<int32_t> lengths;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy(rows[i].begin(), rows[i].end(), ids.data<int32_t>() + int64_t(i) * longest);
    lengths.push_back(int32_t(rows[i].size()));
  }
  return {{name, ids}, {name + "_lengths", Tensor::from_vector(lengths, {int64_t(rows.size())})}};
}

std::string case_name(int beam) {
  return beam == 1 ? "greedy" : "beam" + std::to_string(beam);
}
}  // namespace

Json bench_test_split(const TestSplitArgs& args) {
  model_dir::TranslationModel m = model_dir::load_translation_dir(args.model_dir, args.checkpoint);
  const nn::Seq2SeqConfig& c = m.model->config();
  std::vector<std::string> lines = data::read_corpus(args.test).src;
  if (args.sentences > 0 && int64_t(lines.size()) > args.sentences)
    lines.resize(size_t(args.sentences));

  // The ids Translator decodes (it cuts sources at the model's positions, as here).
  auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> sources = m.tokenizer->encode_all(lines);
  double tokenize_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t source_tokens = 0;
  for (auto& s : sources) {
    if (int64_t(s.size()) > c.max_positions) s.resize(size_t(c.max_positions));
    source_tokens += int64_t(s.size());
  }
  log_line("test-split: %zu sentences, %lld source subwords (%s)", lines.size(),
           (long long)source_tokens, m.weights_path.c_str());

  std::vector<std::string> warm_lines(
      lines.begin(), lines.begin() + std::min<ptrdiff_t>(8, ptrdiff_t(lines.size())));
  decode::TranslatorOptions options;
  options.batch_tokens = args.batch_tokens;
  Json cases = Json::array();
  NamedTensors outputs;
  for (int beam : args.beams) {
    options.search.beam = beam, options.search.n_best = 1;
    decode::TranslatorOptions warm = options;  // a short run warms the allocator and threads
    warm.search.max_length = 2;
    decode::Translator(*m.model, *m.tokenizer, warm).translate(warm_lines);
    decode::Translator translator(*m.model, *m.tokenizer, options);
    std::vector<std::vector<decode::Translation>> out;
    Timing t = time_runs([&] { out = translator.translate(lines); },
                         {0, args.runs, 1, args.budget_s, true});
    std::vector<std::vector<int32_t>> best;
    int64_t target_tokens = 0;
    for (const auto& nbest : out) {
      best.push_back(nbest.at(0).tokens);
      target_tokens += int64_t(best.back().size());
    }
    std::string name = case_name(beam);
    for (auto& named : padded(name, best, -1)) outputs.push_back(std::move(named));
    double rate = double(source_tokens) / t.median();
    log_line("test-split %-7s qkv   %8.0f source tokens/s", name.c_str(), rate);
    cases.push_back({{"name", name},
                     {"beam", beam},
                     {"timing", t.to_json()},
                     {"target_tokens", target_tokens},
                     {"source_tokens_per_s", rate}});
  }

  const decode::SearchOptions& o = options.search;
  if (!args.out_dir.empty()) {
    std::filesystem::create_directories(args.out_dir);
    Json config = config_json(c);
    config["weights"] = std::filesystem::absolute(m.weights_path).string();
    config["batch_tokens"] = args.batch_tokens;
    config["search"] = {{"length_penalty", o.length_penalty},
                        {"max_length_ratio", o.max_length_ratio},
                        {"max_length_offset", o.max_length_offset},
                        {"max_length", std::min(o.max_length, c.max_positions)},
                        {"min_length", o.min_length}};
    std::ofstream(args.out_dir + "/config.json") << config.dump(2) << "\n";
    save_safetensors(args.out_dir + "/sources.safetensors", padded("src", sources, c.pad_id));
    save_safetensors(args.out_dir + "/qkv_outputs.safetensors", outputs);
  }
  return {{"model_dir", args.model_dir},
          {"weights", m.weights_path},
          {"test", args.test},
          {"sentences", int64_t(lines.size())},
          {"source_tokens", source_tokens},
          {"batch_tokens", args.batch_tokens},
          {"tokenize_s", tokenize_s},
          {"cases", cases}};
}

}  // namespace qkv::bench
