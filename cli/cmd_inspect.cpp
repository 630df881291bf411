// qkv inspect FILE.safetensors: one line per tensor (name, dtype, shape, bytes) and the metadata.
#include <iostream>

#include "commands.h"
#include "io/safetensors.h"

namespace qkv::cli {

Command add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "List the tensors and metadata of a safetensors file");
  auto path = std::make_shared<std::string>();
  cmd->add_option("file", *path, "a .safetensors file")->required();
  return [path]() {
    SafetensorsHeader h = read_safetensors_header(*path);
    uint64_t total = 0;
    for (const auto& e : h.entries) {
      std::cout << e.name << "\t" << dtype_name(e.dtype) << "\t" << shape_str(e.shape) << "\t"
                << (e.end - e.begin) << "\n";
      total += e.end - e.begin;
    }
    for (const auto& [k, v] : h.metadata) std::cout << "metadata\t" << k << "\t" << v << "\n";
    std::cout << h.entries.size() << " tensors, " << total << " bytes\n";
    return 0;
  };
}

}  // namespace qkv::cli
