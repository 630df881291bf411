// A JSON configuration file (Hugging Face's config.json and friends) with typed lookups whose
// errors name the file and the key.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

namespace qkv::convert {

class JsonFile {
 public:
  // Throws std::runtime_error naming `path` when it is missing or not a JSON object.
  static JsonFile read(const std::string& path);
  static std::optional<JsonFile> read_if_exists(const std::string& path);

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return json_; }
  bool has(const std::string& key) const { return json_.contains(key) && !json_[key].is_null(); }

  // The value of `key` as T; throws when it is missing or of another type.
  template <class T>
  T require(const std::string& key) const {
    if (!has(key)) throw std::runtime_error(path_ + ": missing \"" + key + "\"");
    return as<T>(key);
  }
  // The value of `key` as T, or `fallback` when the key is missing or null.
  template <class T>
  T get(const std::string& key, const T& fallback) const {
    return has(key) ? as<T>(key) : fallback;
  }

 private:
  template <class T>
  T as(const std::string& key) const {
    try {
      return json_.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
      throw std::runtime_error(path_ + ": \"" + key + "\" has the wrong type (" +
                               json_.at(key).dump() + ")");
    }
  }

  std::string path_;
  nlohmann::json json_;
};

// Writes `j` to `path` (atomically), indented as Hugging Face writes its files.
void write_json(const std::string& path, const nlohmann::ordered_json& j);

}  // namespace qkv::convert
