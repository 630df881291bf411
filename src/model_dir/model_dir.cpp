#include "model_dir/model_dir.h"

#include <filesystem>
#include <stdexcept>

#include "config/options.h"

namespace qkv::model_dir {

namespace fs = std::filesystem;

namespace {
constexpr Family kFamilies[] = {Family::seq2seq, Family::vit, Family::gpt};
}  // namespace

const char* family_name(Family family) {
  switch (family) {
    case Family::seq2seq:
      return "seq2seq";
    case Family::vit:
      return "vit";
    case Family::gpt:
      return "gpt";
  }
  return "?";
}

std::string config_path(const std::string& dir) {
  return (fs::path(dir) / kConfigFile).string();
}

std::string existing_config_path(const std::string& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": no such model directory");
  std::string path = config_path(dir);
  if (!fs::exists(path))
    throw std::runtime_error(dir + ": not a qkv model directory (no " + kConfigFile + ")");
  return path;
}

void check_which(const std::string& which) {
  if (which != "best" && which != "last")
    throw std::invalid_argument("--checkpoint must be best or last, not '" + which + "'");
}

std::string weights_path(const std::string& dir, const std::string& which) {
  check_which(which);
  fs::path best = fs::path(dir) / kBestWeightsFile, last = fs::path(dir) / kWeightsFile;
  if (which == "best" && fs::exists(best)) return best.string();
  if (!fs::exists(last))
    throw std::runtime_error(dir + ": no " + kWeightsFile +
                             " (has training written a checkpoint?)");
  return last.string();
}

std::string model_type_of(const std::string& config_file) {
  return read_yaml_scalar(config_file, "model-type");
}

namespace {
// The family a model-type names. A config.yaml without one is a translation model, as qkv has
// always read such files.
std::optional<Family> family_of_type(const std::string& type) {
  if (type.empty()) return Family::seq2seq;
  for (Family f : kFamilies)
    if (type == family_name(f)) return f;
  return std::nullopt;
}
}  // namespace

std::optional<Family> recognise(const std::string& dir) {
  std::string path = config_path(dir);
  if (!fs::is_regular_file(path)) return std::nullopt;
  try {
    return family_of_type(model_type_of(path));
  } catch (const std::runtime_error&) {
    return std::nullopt;
  }
}

Family family(const std::string& dir) {
  std::string path = existing_config_path(dir);
  std::string type = model_type_of(path);
  if (std::optional<Family> f = family_of_type(type)) return *f;
  std::string known;
  for (Family f : kFamilies) known += std::string(known.empty() ? "" : ", ") + family_name(f);
  throw std::runtime_error(path + ": model-type '" + type + "' is not one qkv knows (" + known +
                           ")");
}

}  // namespace qkv::model_dir
