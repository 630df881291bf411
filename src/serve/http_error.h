// An error a request caused: the HTTP status it is answered with and the request field at fault
// ("" when the request as a whole is). The server answers it as
// {"error": {"message": ..., "field": ..., "code": status}}.
#pragma once
#include <stdexcept>
#include <string>

namespace qkv::serve {

struct HttpError : std::runtime_error {
  HttpError(int status, std::string field, const std::string& message)
      : std::runtime_error(message), status(status), field(std::move(field)) {}
  int status;
  std::string field;
};

}  // namespace qkv::serve
