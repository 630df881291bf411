// The `qkv` subcommands. Each cli/cmd_*.cpp adds one subcommand to the app and returns a
// callback that runs it (exit code). Errors a user can cause are thrown as std::exception with
// a message that names the file or option; main() prints "qkv: <message>" and exits 1.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace qkv::cli {

using Command = std::function<int()>;

Command add_inspect(CLI::App& app);

}  // namespace qkv::cli
