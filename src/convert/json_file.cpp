#include "convert/json_file.h"

#include <filesystem>

#include "io/atomic_file.h"

namespace qkv::convert {

JsonFile JsonFile::read(const std::string& path) {
  std::string bytes = read_file(path);
  JsonFile f;
  f.path_ = path;
  try {
    f.json_ = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
  if (!f.json_.is_object()) throw std::runtime_error(path + ": expected a JSON object");
  return f;
}

std::optional<JsonFile> JsonFile::read_if_exists(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  return read(path);
}

void write_json(const std::string& path, const nlohmann::ordered_json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace qkv::convert
