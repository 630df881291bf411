// Named options shared by the command line and YAML config files. Each option has a
// kebab-case key, a help text and a typed field it writes to; `--key value` on the command line
// and `key: value` in a YAML file set the same field, the command line winning. An unknown key
// in a file, or a value of the wrong type, is an error naming the file and key.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace qkv {

class Options {
 public:
  void add(const std::string& key, std::string& field, const std::string& help);
  void add(const std::string& key, std::vector<std::string>& field, const std::string& help);
  void add(const std::string& key, int64_t& field, const std::string& help);
  void add(const std::string& key, int32_t& field, const std::string& help);
  void add(const std::string& key, double& field, const std::string& help);
  void add(const std::string& key, float& field, const std::string& help);
  // Lists of numbers, each written as the shortest text that reads back to the same value.
  void add(const std::string& key, std::vector<float>& field, const std::string& help);
  void add(const std::string& key, std::vector<int32_t>& field, const std::string& help);
  void add(const std::string& key, bool& field, const std::string& help);

  // Registers every option as `--key` on `app`, recording what the user typed.
  void add_to_cli(CLI::App& app);
  // Applies a YAML mapping from `path`; keys must be known.
  void load_yaml(const std::string& path);
  // Applies what was given on the command line (after the file).
  void apply_cli();
  bool given_on_cli(const std::string& key) const { return cli_.count(key) > 0; }
  // Every option as YAML, in registration order.
  std::string to_yaml() const;

 private:
  struct Spec {
    std::string key, help;
    bool is_list = false;
    std::function<void(const std::vector<std::string>&, const std::string& where)> set;
    std::function<std::vector<std::string>()> get;
  };
  void add_spec(Spec spec);
  std::vector<Spec> specs_;
  std::map<std::string, std::vector<std::string>> cli_;
};

// The scalar value of `key` in the YAML mapping at path ("" when it has none); std::runtime_error
// naming the file when it cannot be read as YAML.
std::string read_yaml_scalar(const std::string& path, const std::string& key);

}  // namespace qkv
