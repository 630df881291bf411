// A subcommand configured like a training run (train, train-lm, train-vit, serve): `--config
// FILE.yaml` plus every option of Config as a flag; the file is read first and the flags given on
// the command line override it. run(config) does the work; the command then exits 0.
#pragma once
#include <memory>
#include <string>

#include "commands.h"
#include "config/options.h"

namespace qkv::cli {

template <class Config, class Run>
Command add_config_command(CLI::App& app, const std::string& name, const std::string& help,
                           Run run) {
  auto* cmd = app.add_subcommand(name, help);
  struct State {
    Config config;
    Options options;
    std::string config_file;
  };
  auto s = std::make_shared<State>();
  cmd->add_option("--config", s->config_file, "YAML file of options (keys as the flags below)");
  s->config.bind(s->options);
  s->options.add_to_cli(*cmd);
  return [s, run]() {
    if (!s->config_file.empty()) s->options.load_yaml(s->config_file);
    s->options.apply_cli();
    run(s->config);
    return 0;
  };
}

}  // namespace qkv::cli
