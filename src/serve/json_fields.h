// Reading a JSON request: the body parsed into an object, and typed access to its fields. A
// body that is not JSON, a field of the wrong type or out of range, an unknown field and text
// that is not valid UTF-8 are HttpError 400 naming the field.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "serve/http_error.h"

namespace qkv::serve {

using Json = nlohmann::json;

// The body as a JSON object. Invalid UTF-8 inside a string is reported with the field holding
// it (e.g. "text[1]"), not as a parse error.
Json parse_json_object(const std::string& body);

// Throws for the first key of `request` not in `known`.
void check_fields(const Json& request, const std::vector<std::string>& known);

// The field, or `fallback` when it is absent or null.
std::optional<std::string> optional_string(const Json& request, const std::string& field);
int64_t integer_field(const Json& request, const std::string& field, int64_t fallback,
                      int64_t lowest, int64_t highest);
double number_field(const Json& request, const std::string& field, double fallback, double lowest,
                    double highest);
bool bool_field(const Json& request, const std::string& field, bool fallback);

// A string or a list of strings: the strings, and whether it was a list. A missing field is an
// error unless `required` is false (then: an empty list).
struct Strings {
  std::string field;
  std::vector<std::string> values;
  bool was_list = false;
  // How errors name value i: "text[1]" for a list, "text" for a single string.
  std::string name(size_t i) const {
    return was_list ? field + "[" + std::to_string(i) + "]" : field;
  }
};
Strings strings_field(const Json& request, const std::string& field, bool required = true);

}  // namespace qkv::serve
