#include <exception>
#include <iostream>
#include <map>

#include "commands.h"
#include "train/data_parallel.h"

using qkv::train::Ranks;

int main(int argc, char** argv) {
  // Under mpirun, every rank runs this; an error on any rank stops them all (Ranks::abort).
  Ranks::init(argc, argv);
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
  add(qkv::cli::add_distill);
  add(qkv::cli::add_translate);
  add(qkv::cli::add_generate);
  add(qkv::cli::add_eval);
  add(qkv::cli::add_classify);
  add(qkv::cli::add_score);
  add(qkv::cli::add_convert);
  add(qkv::cli::add_merge_lora);
  add(qkv::cli::add_quantize);
  add(qkv::cli::add_serve);
  add(qkv::cli::add_inspect);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (Ranks::size() > 1 && e.get_exit_code() != 0) Ranks::abort(e.what());
    int code = Ranks::root() ? app.exit(e) : e.get_exit_code();  // --help: rank 0 prints it
    Ranks::finalize();
    return code;
  }
  int status = 0;
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) {
        if (Ranks::size() > 1 && sub->get_name().rfind("train", 0) != 0)
          throw std::invalid_argument("qkv " + sub->get_name() +
                                      " runs in one process: only the training commands (train, "
                                      "train-lm, train-vit) run as several MPI ranks");
        status = run();
      }
  } catch (const std::exception& e) {
    if (Ranks::size() > 1) Ranks::abort(e.what());
    std::cerr << "qkv: " << e.what() << "\n";
    return 1;
  }
  Ranks::finalize();
  return status;
}
