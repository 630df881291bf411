#include "config/options.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <sstream>
#include <stdexcept>

namespace qkv {

namespace {
const std::string& single(const std::vector<std::string>& v, const std::string& where) {
  if (v.size() != 1) throw std::invalid_argument(where + ": expected one value");
  return v[0];
}

template <class T>
T parse_number(const std::string& s, const std::string& where) {
  T value{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size())
    throw std::invalid_argument(where + ": '" + s + "' is not a valid number");
  return value;
}

template <class T>
std::string number_text(T v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// The setter and getter of a list of numbers, each written as its shortest text that reads
// back to the same value.
template <class T>
auto parse_list(std::vector<T>& field) {
  return [&field](const std::vector<std::string>& v, const std::string& where) {
    std::vector<T> parsed;
    for (const auto& s : v) parsed.push_back(parse_number<T>(s, where));
    field = std::move(parsed);
  };
}

template <class T>
auto list_texts(const std::vector<T>& field) {
  return [&field] {
    std::vector<std::string> texts;
    for (T x : field) {
      char buf[32];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
      texts.emplace_back(buf, end);
    }
    return texts;
  };
}
}  // namespace

void Options::add_spec(Spec spec) {
  for (const auto& s : specs_)
    if (s.key == spec.key) throw std::logic_error("option '" + spec.key + "' registered twice");
  specs_.push_back(std::move(spec));
}

void Options::add(const std::string& key, std::string& field, const std::string& help) {
  add_spec({key, help, false, [&field](auto& v, auto& w) { field = single(v, w); },
            [&field] { return std::vector<std::string>{field}; }});
}

void Options::add(const std::string& key, std::vector<std::string>& field,
                  const std::string& help) {
  add_spec({key, help, true, [&field](auto& v, auto&) { field = v; }, [&field] { return field; }});
}

void Options::add(const std::string& key, int64_t& field, const std::string& help) {
  add_spec({key, help, false,
            [&field](auto& v, auto& w) { field = parse_number<int64_t>(single(v, w), w); },
            [&field] { return std::vector<std::string>{number_text(field)}; }});
}

void Options::add(const std::string& key, int32_t& field, const std::string& help) {
  add_spec({key, help, false,
            [&field](auto& v, auto& w) { field = parse_number<int32_t>(single(v, w), w); },
            [&field] { return std::vector<std::string>{number_text(field)}; }});
}

void Options::add(const std::string& key, double& field, const std::string& help) {
  add_spec({key, help, false,
            [&field](auto& v, auto& w) { field = parse_number<double>(single(v, w), w); },
            [&field] { return std::vector<std::string>{number_text(field)}; }});
}

void Options::add(const std::string& key, float& field, const std::string& help) {
  add_spec({key, help, false,
            [&field](auto& v, auto& w) { field = parse_number<float>(single(v, w), w); },
            [&field] { return std::vector<std::string>{number_text(field)}; }});
}

void Options::add(const std::string& key, std::vector<float>& field, const std::string& help) {
  add_spec({key, help, true, parse_list(field), list_texts(field)});
}

void Options::add(const std::string& key, std::vector<int32_t>& field, const std::string& help) {
  add_spec({key, help, true, parse_list(field), list_texts(field)});
}

void Options::add(const std::string& key, bool& field, const std::string& help) {
  add_spec({key, help, false,
            [&field](auto& v, auto& w) {
              const std::string& s = single(v, w);
              if (s == "true" || s == "1" || s == "yes")
                field = true;
              else if (s == "false" || s == "0" || s == "no")
                field = false;
              else
                throw std::invalid_argument(w + ": '" + s + "' is not true or false");
            },
            [&field] { return std::vector<std::string>{field ? "true" : "false"}; }});
}

void Options::add_to_cli(CLI::App& app) {
  for (const auto& s : specs_) {
    std::string key = s.key;
    std::string def;
    for (const auto& v : s.get()) def += (def.empty() ? "" : " ") + v;
    auto* opt = app.add_option_function<std::vector<std::string>>(
        "--" + key, [this, key](const std::vector<std::string>& v) { cli_[key] = v; },
        s.help + (def.empty() ? "" : " [default: " + def + "]"));
    if (s.is_list)
      opt->expected(1, -1);
    else
      opt->expected(1);
  }
}

namespace {
YAML::Node load_yaml_file(const std::string& path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw std::runtime_error(path + ": cannot open the config file");
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(path + ": not valid YAML: " + e.what());
  }
}
}  // namespace

std::string read_yaml_scalar(const std::string& path, const std::string& key) {
  YAML::Node root = load_yaml_file(path);
  if (!root.IsMap() || !root[key] || !root[key].IsScalar()) return "";
  return root[key].as<std::string>();
}

void Options::load_yaml(const std::string& path) {
  YAML::Node root = load_yaml_file(path);
  if (root.IsNull()) return;
  if (!root.IsMap())
    throw std::runtime_error(path + ": a config file must be a mapping of key: value");
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    auto it = std::find_if(specs_.begin(), specs_.end(), [&](auto& s) { return s.key == key; });
    std::string where = path + ":" + std::to_string(kv.first.Mark().line + 1) + ": " + key;
    if (it == specs_.end())
      throw std::invalid_argument(where + ": unknown key (see --help for the valid keys)");
    std::vector<std::string> values;
    if (kv.second.IsSequence()) {
      if (!it->is_list) throw std::invalid_argument(where + ": expected one value, got a list");
      for (const auto& item : kv.second) values.push_back(item.as<std::string>());
    } else if (kv.second.IsScalar()) {
      values.push_back(kv.second.as<std::string>());
    } else if (!kv.second.IsNull()) {
      throw std::invalid_argument(where + ": expected a value");
    }
    it->set(values, where);
  }
}

void Options::apply_cli() {
  for (const auto& [key, values] : cli_) {
    auto it = std::find_if(specs_.begin(), specs_.end(), [&](auto& s) { return s.key == key; });
    it->set(values, "--" + key);
  }
}

std::string Options::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const auto& s : specs_) {
    out << YAML::Key << s.key << YAML::Value;
    auto v = s.get();
    if (s.is_list) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& x : v) out << x;
      out << YAML::EndSeq;
    } else {
      out << v[0];
    }
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace qkv
