// POST /v1/classify: images as base64 in JSON, or one image file as the body.
#include "data/image_folder.h"
#include "serve/api.h"

namespace qkv::serve {

namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;  // standard and URL-safe alphabets
  if (c == '/' || c == '_') return 63;
  return -1;
}

// RFC 4648 base64 (padding optional, whitespace ignored), after an optional
// "data:<type>;base64," prefix as browsers' FileReader gives.
std::string decode_base64(std::string_view text, const std::string& field) {
  if (text.starts_with("data:")) {
    size_t comma = text.find(',');
    if (comma == std::string_view::npos ||
        text.substr(0, comma).find(";base64") == std::string_view::npos)
      throw HttpError(400, field, "'" + field + "' is a data URL without ';base64,'");
    text.remove_prefix(comma + 1);
  }
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  size_t padding = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    int v = base64_value(c);
    if (v < 0 || padding > 0)
      throw HttpError(400, field, "'" + field + "' is not base64 (at '" + std::string(1, c) + "')");
    bits = bits << 6 | uint32_t(v), count += 6;
    if (count >= 8) out += char(bits >> (count - 8) & 0xFF), count -= 8;
  }
  if (count >= 6 || padding > 2) throw HttpError(400, field, "'" + field + "' is not base64");
  return out;
}

Json predictions_of(const ClassificationJob& job) {
  Json all = Json::array();
  for (const auto& scores : job.results) {
    Json list = Json::array();
    for (const eval::ClassScore& s : scores)
      list.push_back({{"label", s.label}, {"probability", s.probability}, {"index", s.index}});
    all.push_back(list);
  }
  return all;
}

// Decodes the images (a bad one is named by its field) and runs the job.
Json run_images(const std::vector<std::pair<std::string, std::string>>& named_bytes, int64_t top_k,
                ServedModel& model, const RequestLimits& limits) {
  const nn::ViTConfig& c = model.vit().config();
  data::ImageShape shape{c.channels, c.image_size, c.image_size};
  auto job = std::make_shared<ClassificationJob>();
  for (const auto& [field, bytes] : named_bytes) {
    try {
      job->images.push_back(data::decode_image(bytes, shape, "'" + field + "'"));
    } catch (const std::exception& e) {
      throw HttpError(400, field, e.what());
    }
  }
  job->top_k = top_k;
  int64_t patches = (c.image_size / c.patch_size) * (c.image_size / c.patch_size) + 1;
  job->cost = int64_t(job->images.size()) * patches;
  model.submit(job);
  wait_for(*job, limits);
  return {{"model", model.name()}, {"predictions", predictions_of(*job)}};
}

}  // namespace

Json classify_json(const Json& request, const ModelSet& models, const RequestLimits& limits) {
  check_fields(request, {"model", "image", "images", "top_k"});
  ServedModel& model = models.find(optional_string(request, "model"), model_dir::Family::vit);
  int64_t top_k = integer_field(request, "top_k", 5, 1, 1 << 30);
  bool one = request.contains("image"), many = request.contains("images");
  if (one == many) throw HttpError(400, "image", "give exactly one of 'image' and 'images'");
  Strings images = strings_field(request, one ? "image" : "images");
  limits.check_items(images.field, images.values.size(), "images");
  std::vector<std::pair<std::string, std::string>> named;
  for (size_t i = 0; i < images.values.size(); ++i)
    named.emplace_back(images.name(i), decode_base64(images.values[i], images.name(i)));
  return run_images(named, top_k, model, limits);
}

Json classify_file(const std::string& bytes, const std::optional<std::string>& model_name,
                   const std::optional<std::string>& top_k_text, const ModelSet& models,
                   const RequestLimits& limits) {
  ServedModel& model = models.find(model_name, model_dir::Family::vit);
  int64_t top_k = 5;
  if (top_k_text) {
    Json parsed = Json::parse(*top_k_text, nullptr, false);
    top_k = integer_field({{"top_k", parsed.is_discarded() ? Json(*top_k_text) : parsed}}, "top_k",
                          5, 1, 1 << 30);
  }
  return run_images({{"body", bytes}}, top_k, model, limits);
}

}  // namespace qkv::serve
