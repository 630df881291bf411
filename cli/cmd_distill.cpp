// qkv distill: a student trained from a teacher (train/distill.h). The student's options are
// those of the training command of the teacher's family (train, train-lm, train-vit), so they
// are read once the teacher is known: from --teacher, or from `teacher:` in the --config file.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "config/options.h"
#include "io/atomic_file.h"
#include "train/distill.h"

namespace qkv::cli {

namespace {

const char* kDistillHelp =
    "Train a small student model from a trained teacher (knowledge distillation).\n"
    "Example: qkv distill --teacher runs/small --config configs/tiny.yaml --model-dir "
    "runs/student\n"
    "  translation: --method seq (default: the student trains on the teacher's beam-search\n"
    "    translations of its training sources, made once in MODEL_DIR/distill/ and reused) or\n"
    "    --method word (the KL divergence from the teacher's distribution at each target word);\n"
    "  GPT: --method word;  ViT: --method logits (soft targets at --temperature).\n"
    "The student's options are those of qkv train, train-lm or train-vit (by the teacher's\n"
    "family); `qkv distill --teacher DIR --help` lists them all.";

template <class Config>
struct DistillConfig : Config {
  train::DistillOptions distill;
  void bind(Options& o) {
    Config::bind(o);
    distill.bind(o);
  }
};

// The value of --teacher DIR or --teacher=DIR in args, else `teacher:` in the --config file.
std::string teacher_of(const std::vector<std::string>& args) {
  std::string config;
  for (size_t i = 0; i < args.size(); ++i) {
    for (const std::string key : {"--teacher", "--config"}) {
      std::string value;
      if (args[i] == key && i + 1 < args.size()) value = args[i + 1];
      if (args[i].rfind(key + "=", 0) == 0) value = args[i].substr(key.size() + 1);
      if (value.empty()) continue;
      if (key == "--teacher") return value;
      config = value;
    }
  }
  return config.empty() ? "" : read_yaml_scalar(config, "teacher");
}

template <class Config, class Run>
int parse_and_run(std::vector<std::string> args, Run run) {
  CLI::App app{kDistillHelp, "qkv distill"};
  DistillConfig<Config> config;
  Options options;
  std::string config_file;
  app.add_option("--config", config_file, "YAML file of options (keys as the flags below)");
  config.bind(options);
  options.add_to_cli(app);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!config_file.empty()) options.load_yaml(config_file);
  options.apply_cli();
  namespace fs = std::filesystem;
  if (fs::exists(config.model_dir) && fs::exists(config.distill.teacher) &&
      fs::equivalent(config.model_dir, config.distill.teacher))
    throw std::invalid_argument("--model-dir " + config.model_dir + " is the teacher " +
                                config.distill.teacher + ": train the student into another one");
  if (!config.model_dir.empty()) {  // what the run was asked, teacher included
    fs::create_directories(config.model_dir);
    write_file_atomic(config.model_dir + "/distill.yaml", options.to_yaml());
  }
  run(config, config.distill);
  return 0;
}

}  // namespace

Command add_distill(CLI::App& app) {
  auto* cmd = app.add_subcommand("distill", kDistillHelp);
  cmd->prefix_command();  // every argument is read once the teacher's family is known
  cmd->set_help_flag();
  return [cmd]() {
    std::vector<std::string> args = cmd->remaining();
    bool help = std::count(args.begin(), args.end(), "--help") +
                    std::count(args.begin(), args.end(), "-h") >
                0;
    std::string teacher = teacher_of(args);
    if (teacher.empty()) {
      if (help) {
        std::cout << kDistillHelp << "\n";
        return 0;
      }
      throw std::invalid_argument(
          "distill: --teacher (the teacher's model directory) is required, on the command line "
          "or as `teacher:` in the --config file");
    }
    switch (model_dir::family(teacher)) {
      case model_dir::Family::seq2seq:
        return parse_and_run<train::TrainConfig>(args, train::distill_seq2seq);
      case model_dir::Family::gpt:
        return parse_and_run<train::LmTrainConfig>(args, train::distill_lm);
      case model_dir::Family::vit:
        return parse_and_run<train::ViTTrainConfig>(args, train::distill_vit);
    }
    return 1;
  };
}

}  // namespace qkv::cli
