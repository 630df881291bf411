// Test support for the command-line tests: runs the built `qkv` (QKV_BINARY, defined for the
// tests named test_cli_* and test_train*) as a user would, and collects what it printed.
#pragma once
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/torch_ref.h"

namespace qkv::test {

struct CliResult {
  int status;  // the exit code (-1 when killed by a signal)
  std::string out, err;
};

inline std::string read_text(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path).rdbuf();
  return ss.str();
}

// Runs `qkv args` through the shell with `input` on stdin.
inline CliResult run_qkv(const std::string& args, const std::string& input = "") {
  std::string in = temp_path("cli.in"), out = temp_path("cli.out"), err = temp_path("cli.err");
  std::ofstream(in) << input;
  std::string cmd = std::string(QKV_BINARY) + " " + args + " < " + in + " > " + out + " 2> " + err;
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(out), read_text(err)};
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  return lines;
}

}  // namespace qkv::test
