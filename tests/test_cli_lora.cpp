// LoRA adapters at inference as a user runs them: --adapter on translate, generate, classify,
// score and eval gives what the model `qkv merge-lora` wrote gives (and not what the base
// gives), --use-adapter picks among several, and bad adapters are refused by name with the base
// model directory left byte for byte as it was.
#include <gtest/gtest.h>
#include <stb_image_write.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "data/corpus.h"
#include "data/lm_tokenizer.h"
#include "io/atomic_file.h"
#include "model_dir/adapter_dir.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"
#include "support/cli_run.h"
#include "support/data_files.h"
#include "support/random_model_dirs.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

// A rank-2 adapter of every hidden linear of the model (whose weights are `base`) with a
// random, non-zero B, written to dir as training would.
void save_random_adapter(const std::string& dir, const std::string& base_dir,
                         const nn::LinearList& linears, const nn::ParamList& base, uint64_t seed) {
  Rng rng(seed);
  model_dir::AdapterConfig config;
  config.options.rank = 2, config.options.alpha = 4, config.options.targets = {"all-linear"};
  config.base_model = base_dir;
  nn::LoraAdapter adapter = nn::new_lora_adapter(linears, config.options, rng);
  for (auto& [module, w] : adapter.modules)
    w.b.mutable_value().copy_from(randn(w.b.value().shape(), rng, 0.5f));
  model_dir::save_adapter(dir, config, adapter, nn::weights_checksum(base));
}

// A random translation model with its tokenizer (seed picks the weights).
std::string translation_base(const ScratchDir& dir, const std::string& name, uint64_t seed) {
  std::string out = dir.file(name);
  write_random_translation_dir(out, seed);
  return out;
}

std::string gpt_base(const ScratchDir& dir) {
  std::string out = dir.file("gpt");
  write_random_gpt_dir(out, 3);
  return out;
}

std::string vit_base(const ScratchDir& dir) {
  std::string out = dir.file("vit");
  write_random_vit_dir(out, 4);
  return out;
}

// Loads the base of `dir` as a command does and writes a random adapter for it.
std::string adapter_for(const std::string& base, const std::string& dir, uint64_t seed) {
  switch (model_dir::family(base)) {
    case model_dir::Family::seq2seq: {
      auto m = model_dir::load_translation_dir(base);
      save_random_adapter(dir, base, m.model->linears(), m.model->params(), seed);
      break;
    }
    case model_dir::Family::gpt: {
      auto m = model_dir::load_language_model_dir(base);
      save_random_adapter(dir, base, m.model->linears(), m.model->params(), seed);
      break;
    }
    case model_dir::Family::vit: {
      auto m = model_dir::load_vit_dir(base);
      save_random_adapter(dir, base, m->linears(), m->params(), seed);
      break;
    }
  }
  return dir;
}

// qkv merge-lora of base and adapter into `to`.
std::string merged(const std::string& base, const std::string& adapter, const std::string& to) {
  CliResult r = run_qkv("merge-lora --model-dir " + base + " --adapter " + adapter + " --to " + to);
  EXPECT_EQ(r.status, 0) << r.err;
  return to;
}

// Every file under dir with its bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& f : fs::recursive_directory_iterator(dir))
    if (f.is_regular_file()) files[f.path().string()] = read_file(f.path().string());
  return files;
}

// The tab-separated numbers of each output line.
std::vector<std::vector<double>> numbers(const std::string& out) {
  std::vector<std::vector<double>> rows;
  for (const auto& line : lines_of(out)) {
    std::stringstream s(line);
    std::vector<double> row;
    for (double x; s >> x;) row.push_back(x);
    rows.push_back(row);
  }
  return rows;
}

void expect_near_rows(const std::vector<std::vector<double>>& got,
                      const std::vector<std::vector<double>>& want, double tolerance) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size()) << "line " << i;
    for (size_t j = 0; j < got[i].size(); ++j)
      EXPECT_NEAR(got[i][j], want[i][j], tolerance) << "line " << i << ", column " << j;
  }
}

// Runs `args` on the base, with the adapter, and on the merged model: returns their results.
struct Three {
  CliResult base, adapter, merged;
};
Three run_three(const std::string& args, const std::string& base, const std::string& adapter,
                const std::string& merged_dir, const std::string& input = "") {
  Three t{run_qkv(args + " --model-dir " + base, input),
          run_qkv(args + " --model-dir " + base + " --adapter " + adapter, input),
          run_qkv(args + " --model-dir " + merged_dir, input)};
  EXPECT_EQ(t.base.status, 0) << t.base.err;
  EXPECT_EQ(t.adapter.status, 0) << t.adapter.err;
  EXPECT_EQ(t.merged.status, 0) << t.merged.err;
  return t;
}

// Lines `first` to first + n - 1 of the dev set's pairs with both sides under 60 bytes, one side.
std::string short_lines(size_t first, size_t n, bool source = true) {
  std::string text;
  size_t seen = 0;
  for (size_t i = 0; i < bible_dev().src.size() && seen < first + n; ++i) {
    if (bible_dev().src[i].size() >= 60 || bible_dev().tgt[i].size() >= 60) continue;
    if (seen++ >= first) text += (source ? bible_dev().src[i] : bible_dev().tgt[i]) + "\n";
  }
  return text;
}

TEST(CliLora, TranslationAdapterEqualsItsMergedModel) {
  ScratchDir dir("cli_lora_translation");
  std::string base = translation_base(dir, "base", 1);
  std::string adapter = adapter_for(base, dir.file("adapter"), 11);
  std::string merged_dir = merged(base, adapter, dir.file("merged"));
  for (const char* search : {"--beam 1", "--beam 3"}) {
    Three t = run_three(std::string("translate --max-length 12 ") + search, base, adapter,
                        merged_dir, short_lines(0, 6));
    EXPECT_EQ(t.adapter.out, t.merged.out) << search;
    EXPECT_NE(t.adapter.out, t.base.out) << search;
    EXPECT_NE(t.adapter.err.find("adapter adapter"), std::string::npos) << t.adapter.err;
  }
  std::string src = dir.file("src.txt"), tgt = dir.file("tgt.txt");
  write_text(src, short_lines(6, 3)), write_text(tgt, short_lines(6, 3, false));
  std::string pairs = src + "," + tgt;
  Three score = run_three("score --input " + pairs, base, adapter, merged_dir);
  expect_near_rows(numbers(score.adapter.out), numbers(score.merged.out), 1e-4);
  EXPECT_NE(score.adapter.out, score.base.out);
  Three eval = run_three("eval --max-length 12 --json --test " + pairs, base, adapter, merged_dir);
  EXPECT_NEAR(nlohmann::json::parse(eval.adapter.out).at("chrf").get<double>(),
              nlohmann::json::parse(eval.merged.out).at("chrf").get<double>(), 1e-4);
  // The merge wrote an ordinary directory; the base and the adapter have no new files.
  EXPECT_TRUE(fs::exists(merged_dir + "/spm.model"));
  EXPECT_FALSE(fs::exists(merged_dir + "/adapter_config.json"));
}

TEST(CliLora, LanguageModelAdapterEqualsItsMergedModel) {
  ScratchDir dir("cli_lora_gpt");
  std::string base = gpt_base(dir);
  std::string adapter = adapter_for(base, dir.file("style"), 12);
  std::string merged_dir = merged(base, adapter, dir.file("merged"));
  Three generate = run_three("generate --prompt 'And God' --temperature 0 --max-new-tokens 16",
                             base, adapter, merged_dir);
  EXPECT_EQ(generate.adapter.out, generate.merged.out);
  EXPECT_NE(generate.adapter.out, generate.base.out);
  std::string text = write_text(dir.file("text.txt"), short_lines(0, 3, false));
  Three score = run_three("score --input " + text, base, adapter, merged_dir);
  expect_near_rows(numbers(score.adapter.out), numbers(score.merged.out), 1e-4);
  EXPECT_NE(score.adapter.out, score.base.out);
  Three eval = run_three("eval --json --test " + text, base, adapter, merged_dir);
  double loss = nlohmann::json::parse(eval.adapter.out).at("loss").get<double>();
  EXPECT_NEAR(loss, nlohmann::json::parse(eval.merged.out).at("loss").get<double>(), 1e-4);
  EXPECT_GT(std::abs(loss - nlohmann::json::parse(eval.base.out).at("loss").get<double>()), 1e-3);
}

// An 8x8 RGB PNG whose pixel (y, x, c) is a seeded hash.
void write_image(const std::string& path, int seed) {
  std::vector<uint8_t> px;
  for (int i = 0; i < 8 * 8 * 3; ++i) px.push_back(uint8_t((i * 37 + seed * 101) % 251));
  ASSERT_TRUE(stbi_write_png(path.c_str(), 8, 8, 3, px.data(), 8 * 3));
}

// classify's "  12.34%  name" lines as (name, percent).
std::vector<std::pair<std::string, double>> classes_of(const std::string& out) {
  std::vector<std::pair<std::string, double>> rows;
  for (const auto& line : lines_of(out)) {
    if (line.rfind("  ", 0) != 0) continue;
    std::stringstream s(line);
    double percent;
    std::string sign, name;
    s >> percent >> sign >> name;
    rows.emplace_back(name, percent);
  }
  return rows;
}

TEST(CliLora, VitAdapterEqualsItsMergedModel) {
  ScratchDir dir("cli_lora_vit");
  std::string base = vit_base(dir);
  std::string adapter = adapter_for(base, dir.file("adapter"), 13);
  std::string merged_dir = merged(base, adapter, dir.file("merged"));
  std::string images;
  for (const char* cls : {"bird", "cat", "dog"}) {
    fs::create_directories(dir.file(std::string("test/") + cls));
    for (int i = 0; i < 2; ++i) {
      std::string path = dir.file(std::string("test/") + cls + "/" + std::to_string(i) + ".png");
      write_image(path, int(images.size()));
      images += " " + path;
    }
  }
  Three classify = run_three("classify -k 3" + images, base, adapter, merged_dir);
  auto with_adapter = classes_of(classify.adapter.out),
       merged_out = classes_of(classify.merged.out);
  ASSERT_EQ(with_adapter.size(), 18u) << classify.adapter.out;
  ASSERT_EQ(merged_out.size(), with_adapter.size());
  for (size_t i = 0; i < with_adapter.size(); ++i) {
    EXPECT_EQ(with_adapter[i].first, merged_out[i].first) << i;
    EXPECT_NEAR(with_adapter[i].second, merged_out[i].second, 0.011) << i;
  }
  EXPECT_NE(classify.adapter.out, classify.base.out);
  // eval writes its report beside the adapter's run, not into the base.
  auto before = snapshot(base);
  Three eval = run_three("eval --test " + dir.file("test"), base, adapter, merged_dir);
  auto report = [](const std::string& out) {  // without the "wrote DIR/..." lines
    std::string kept;
    for (const auto& line : lines_of(out))
      if (line.rfind("wrote ", 0) != 0) kept += line + "\n";
    return kept;
  };
  EXPECT_EQ(report(eval.adapter.out), report(eval.merged.out));
  EXPECT_TRUE(fs::exists(adapter + "/confusion.svg"));
  fs::remove(base + "/confusion.svg");  // the base's own eval wrote it
  EXPECT_EQ(snapshot(base), before);
}

TEST(CliLora, UseAdapterPicksOneOfSeveralByName) {
  ScratchDir dir("cli_lora_select");
  std::string base = gpt_base(dir);
  std::string one = adapter_for(base, dir.file("one"), 21),
              two = adapter_for(base, dir.file("two"), 22);
  std::string args =
      "generate --prompt 'And God' --temperature 0 --max-new-tokens 16 --model-dir " + base +
      " --adapter first=" + one + " --adapter second=" + two;
  CliResult first = run_qkv(args), second = run_qkv(args + " --use-adapter second");
  CliResult picked_first = run_qkv(args + " --use-adapter first");
  ASSERT_EQ(first.status, 0) << first.err;
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(first.out, picked_first.out) << "the first given is the default";
  EXPECT_NE(first.out, second.out);
  CliResult alone = run_qkv(
      "generate --prompt 'And God' --temperature 0 --max-new-tokens 16 "
      "--model-dir " +
      base + " --adapter " + two);
  EXPECT_EQ(second.out, alone.out);
  EXPECT_NE(second.err.find("adapter second"), std::string::npos) << second.err;
  CliResult unknown = run_qkv(args + " --use-adapter third");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("no adapter named 'third' (loaded: first, second)"), std::string::npos)
      << unknown.err;
  CliResult alone_name = run_qkv("generate --prompt A --model-dir " + base + " --use-adapter one");
  EXPECT_EQ(alone_name.status, 1);
  EXPECT_NE(alone_name.err.find("--use-adapter one needs --adapter"), std::string::npos)
      << alone_name.err;
  CliResult twice = run_qkv("generate --prompt A --model-dir " + base + " --adapter " + one +
                            " --adapter " + one);
  EXPECT_EQ(twice.status, 1);
  EXPECT_NE(twice.err.find("two adapters are named 'one'"), std::string::npos) << twice.err;
}

TEST(CliLora, BadAdaptersAreRefusedByNameAndTheBaseIsUntouched) {
  ScratchDir dir("cli_lora_errors");
  std::string base = translation_base(dir, "base", 1), other = translation_base(dir, "other", 2);
  std::string foreign = adapter_for(other, dir.file("foreign"), 31);
  std::string corrupt = adapter_for(base, dir.file("corrupt"), 32);
  write_bytes(corrupt + "/" + model_dir::kAdapterWeightsFile, "not a safetensors file");
  auto before = snapshot(base);
  auto expect_refused = [&](const std::string& args, const std::vector<std::string>& parts) {
    CliResult r = run_qkv(args, short_lines(0, 2));
    EXPECT_EQ(r.status, 1) << args;
    EXPECT_TRUE(r.out.empty()) << r.out;
    for (const auto& part : parts)
      EXPECT_NE(r.err.find(part), std::string::npos) << "'" << r.err << "' lacks '" << part << "'";
    EXPECT_EQ(snapshot(base), before) << args;
  };
  for (const std::string& command :
       {std::string("translate"), "merge-lora --to " + dir.file("out")}) {
    std::string start = command + " --model-dir " + base + " --adapter ";
    expect_refused(start + foreign, {foreign, other, base});
    expect_refused(start + corrupt, {corrupt + "/" + model_dir::kAdapterWeightsFile});
    expect_refused(start + dir.file("missing"), {dir.file("missing"), "no such adapter directory"});
    EXPECT_FALSE(fs::exists(dir.file("out")));
  }
  std::string good = adapter_for(base, dir.file("good"), 33);
  auto other_before = snapshot(other);
  expect_refused("merge-lora --model-dir " + base + " --adapter " + good + " --to " + other,
                 {other, "already holds a model"});
  expect_refused("merge-lora --model-dir " + base + " --adapter " + good + " --to " + base,
                 {"is the base model directory"});
  EXPECT_EQ(snapshot(other), other_before);
}

}  // namespace
}  // namespace qkv::test
