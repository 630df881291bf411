// The web page `qkv serve` answers at "/": the files of src/serve/web/, compiled into the binary
// (cmake/embed_web_assets.cmake), so the server needs no files beside it.
#pragma once
#include <string_view>

namespace qkv::serve {

struct WebAsset {
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view body;
};

// The file at `path` ("/" is "/index.html"), or nullptr.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace qkv::serve
