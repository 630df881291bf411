// `qkv convert --adapter DIR --adapter-out DIR`, run as the built binary on a random GPT-2 folder
// and a peft folder for it (hf_gpt_fixtures.py, peft_fixtures.py): the model and the adapter are
// written both ways; --adapter alone, or with --from torch, is refused; an adapter refused after
// the model was converted takes the new model directory with it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model_dir/adapter_dir.h"
#include "support/cli_run.h"
#include "support/data_files.h"
#include "support/python_script.h"

#ifndef QKV_BINARY
#error "QKV_BINARY must name the built qkv executable"
#endif

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class ConvertPeftCli : public ::testing::Test {
 protected:
  void SetUp() override {
    json hf = {{"arch", "gpt2"},
               {"seed", 3},
               {"format", "safetensors"},
               {"config", {{"n_embd", 16}, {"n_layer", 1}, {"n_head", 2}, {"n_positions", 32}}}};
    std::ofstream(f("hf.json")) << hf.dump();
    run_python_script("hf_gpt_fixtures.py", "make " + f("hf") + " " + f("hf.json"));
    json peft = {{"seed", 1},
                 {"format", "safetensors"},
                 {"config", {{"r", 2}, {"lora_alpha", 4}, {"target_modules", {"c_attn"}}}}};
    std::ofstream(f("peft.json")) << peft.dump();
    run_python_script("peft_fixtures.py",
                      "make " + f("hf") + " " + f("peft") + " " + f("peft.json"));
  }
  std::string f(const std::string& name) const { return dir_.file(name); }
  ScratchDir dir_{"cli_convert_peft"};
};

TEST_F(ConvertPeftCli, WritesTheModelAndItsAdapterBothWays) {
  CliResult r = run_qkv("convert --from hf " + f("hf") + " --to " + f("qkv") + " --adapter " +
                        f("peft") + " --adapter-out " + f("adapter"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("wrote " + f("adapter")), std::string::npos) << r.err;
  EXPECT_EQ(model_dir::read_adapter_config(f("adapter")).options.targets,
            (std::vector<std::string>{"q_proj", "k_proj", "v_proj"}));

  r = run_qkv("convert --from qkv " + f("qkv") + " --to hf " + f("back") + " --adapter " +
              f("adapter") + " --adapter-out " + f("back_peft"));
  ASSERT_EQ(r.status, 0) << r.err;
  json c = json::parse(std::ifstream(f("back_peft") + "/adapter_config.json"));
  EXPECT_EQ(c["target_modules"], json({"c_attn"}));
  EXPECT_EQ(c["base_model_name_or_path"], f("back"));
  EXPECT_TRUE(fs::exists(f("back_peft") + "/adapter_model.safetensors"));
}

TEST_F(ConvertPeftCli, RefusesHalfOrBadAdapterRequestsAndLeavesNothing) {
  CliResult r =
      run_qkv("convert --from hf " + f("hf") + " --to " + f("qkv") + " --adapter " + f("peft"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--adapter DIR and --adapter-out DIR go together"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(f("qkv")));

  r = run_qkv("convert --from torch x.pt --config c.yaml --spm s.model --to " + f("qkv") +
              " --adapter " + f("peft") + " --adapter-out " + f("adapter"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--adapter: only with --from hf or qkv"), std::string::npos) << r.err;

  // lora_bias passes the first look at adapter_config.json and stops the adapter's conversion.
  json c = json::parse(std::ifstream(f("peft") + "/adapter_config.json"));
  c["lora_bias"] = true;
  std::ofstream(f("peft") + "/adapter_config.json") << c.dump();
  r = run_qkv("convert --from hf " + f("hf") + " --to " + f("qkv") + " --adapter " + f("peft") +
              " --adapter-out " + f("adapter"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("\"lora_bias\": true"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(f("qkv"))) << "the converted model stays without its adapter";
  EXPECT_FALSE(fs::exists(f("adapter")));
}

}  // namespace
}  // namespace qkv::test
