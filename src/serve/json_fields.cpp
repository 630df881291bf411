#include "serve/json_fields.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "data/utf8.h"

namespace qkv::serve {

namespace {

// Stands in for a byte that is not UTF-8 while the body is parsed: U+10FFFF, a noncharacter
// that no client has reason to send, so finding it afterwards finds the field.
constexpr std::string_view kBadByte = "\xF4\x8F\xBF\xBF";

std::string mark_invalid_bytes(std::string_view body, bool& any) {
  std::string out;
  for (size_t bad; (bad = data::find_invalid_utf8(body)) != std::string_view::npos;) {
    out.append(body.substr(0, bad)).append(kBadByte);
    body.remove_prefix(bad + 1);
    any = true;
  }
  return out.append(body);
}

// The path of the first string in `j` holding the marker ("text", "text[1]"), or "".
std::string marked_field(const Json& j, const std::string& path) {
  if (j.is_string())
    return j.get_ref<const std::string&>().find(kBadByte) != std::string::npos ? path : "";
  if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) {
      std::string found = marked_field(j[i], path + "[" + std::to_string(i) + "]");
      if (!found.empty()) return found;
    }
  }
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      std::string found = marked_field(value, path.empty() ? key : path + "." + key);
      if (!found.empty()) return found;
      if (key.find(kBadByte) != std::string::npos) return path.empty() ? "(a key)" : path;
    }
  }
  return "";
}

HttpError wrong_type(const std::string& field, const char* expected, const Json& value) {
  return HttpError(400, field,
                   "'" + field + "' must be " + expected + ", not " + value.type_name());
}

}  // namespace

Json parse_json_object(const std::string& body) {
  bool invalid_utf8 = false;
  std::string text = mark_invalid_bytes(body, invalid_utf8);
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw HttpError(400, "", std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw HttpError(400, "", std::string("the body must be a JSON object, not ") + j.type_name());
  if (invalid_utf8) {
    std::string field = marked_field(j, "");
    throw HttpError(400, field, "'" + field + "' is not valid UTF-8");
  }
  return j;
}

void check_fields(const Json& request, const std::vector<std::string>& known) {
  for (const auto& [key, value] : request.items())
    if (std::find(known.begin(), known.end(), key) == known.end())
      throw HttpError(400, key, "unknown field '" + key + "'");
}

std::optional<std::string> optional_string(const Json& request, const std::string& field) {
  auto it = request.find(field);
  if (it == request.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw wrong_type(field, "a string", *it);
  return it->get<std::string>();
}

int64_t integer_field(const Json& request, const std::string& field, int64_t fallback,
                      int64_t lowest, int64_t highest) {
  auto it = request.find(field);
  if (it == request.end() || it->is_null()) return fallback;
  bool whole_float = it->is_number_float() && std::trunc(it->get<double>()) == it->get<double>() &&
                     std::abs(it->get<double>()) < 9e15;
  if (!it->is_number_integer() && !whole_float) throw wrong_type(field, "an integer", *it);
  int64_t value = whole_float ? int64_t(it->get<double>()) : it->get<int64_t>();
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)) value = INT64_MAX;
  if (value < lowest || value > highest)
    throw HttpError(400, field,
                    "'" + field + "' must be in [" + std::to_string(lowest) + ", " +
                        std::to_string(highest) + "], not " + std::to_string(value));
  return value;
}

double number_field(const Json& request, const std::string& field, double fallback, double lowest,
                    double highest) {
  auto it = request.find(field);
  if (it == request.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw wrong_type(field, "a number", *it);
  double value = it->get<double>();
  if (!(value >= lowest && value <= highest))
    throw HttpError(400, field,
                    "'" + field + "' must be in [" + Json(lowest).dump() + ", " +
                        Json(highest).dump() + "], not " + it->dump());
  return value;
}

bool bool_field(const Json& request, const std::string& field, bool fallback) {
  auto it = request.find(field);
  if (it == request.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw wrong_type(field, "true or false", *it);
  return it->get<bool>();
}

Strings strings_field(const Json& request, const std::string& field, bool required) {
  auto it = request.find(field);
  if (it == request.end() || it->is_null()) {
    if (required) throw HttpError(400, field, "'" + field + "' is missing");
    return {field, {}, false};
  }
  Strings out{field, {}, false};
  if (it->is_string()) {
    out.values.push_back(it->get<std::string>());
    return out;
  }
  if (!it->is_array()) throw wrong_type(field, "a string or a list of strings", *it);
  out.was_list = true;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& item = (*it)[i];
    if (!item.is_string()) throw wrong_type(out.name(i), "a string", item);
    out.values.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace qkv::serve
