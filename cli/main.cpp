#include <exception>
#include <iostream>
#include <map>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"qkv: train and run Transformer models (translation, ViT, GPT) on CPU and GPU"};
  app.require_subcommand(1);
  std::map<CLI::App*, qkv::cli::Command> commands;
  auto add = [&](qkv::cli::Command (*adder)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    qkv::cli::Command run = adder(app);
    commands[app.get_subcommands({})[before]] = run;
  };
  add(qkv::cli::add_train);
  add(qkv::cli::add_train_vit);
  add(qkv::cli::add_train_lm);
  add(qkv::cli::add_translate);
  add(qkv::cli::add_generate);
  add(qkv::cli::add_eval);
  add(qkv::cli::add_classify);
  add(qkv::cli::add_score);
  add(qkv::cli::add_convert);
  add(qkv::cli::add_merge_lora);
  add(qkv::cli::add_inspect);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const std::exception& e) {
    std::cerr << "qkv: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
