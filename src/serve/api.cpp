#include "serve/api.h"

#include "nn/vit.h"

namespace qkv::serve {

ModelSet::ModelSet(std::vector<std::unique_ptr<ServedModel>> models) : models_(std::move(models)) {}

ServedModel& ModelSet::find(const std::optional<std::string>& name,
                            model_dir::Family family) const {
  std::string wanted = model_dir::family_name(family);
  for (const auto& m : models_) {
    if (name ? m->name() != *name : m->family() != family) continue;
    if (m->family() != family)
      throw HttpError(400, "model",
                      "model '" + *name + "' is a " + model_dir::family_name(m->family()) +
                          " model; this endpoint needs a " + wanted + " model");
    return *m;
  }
  if (name) throw HttpError(404, "model", "no model named '" + *name + "'");
  throw HttpError(404, "model", "the server has no " + wanted + " model");
}

void RequestLimits::check_items(const std::string& field, size_t count,
                                const std::string& what) const {
  if (count == 0) throw HttpError(400, field, "'" + field + "' holds no " + what);
  if (int64_t(count) > max_items)
    throw HttpError(413, field,
                    "'" + field + "' holds " + std::to_string(count) + " " + what +
                        "; the server takes at most " + std::to_string(max_items) + " per request");
}

void RequestLimits::check_text(const std::string& field, const std::string& text) const {
  if (int64_t(text.size()) > max_text_bytes)
    throw HttpError(413, field,
                    "'" + field + "' is " + std::to_string(text.size()) +
                        " bytes long; the server takes at most " + std::to_string(max_text_bytes));
}

void wait_for(Job& job, const RequestLimits& limits) {
  if (!job.wait_until(job.arrived + limits.timeout))
    throw HttpError(504, "",
                    "the request took longer than the server's timeout (" +
                        std::to_string(limits.timeout.count()) + " ms)");
  if (job.error_status() != 0) throw HttpError(job.error_status(), "", job.error());
}

Json list_models(const ModelSet& models) {
  Json data = Json::array();
  for (const auto& m : models.all()) {
    Json entry = {{"id", m->name()},
                  {"object", "model"},
                  {"owned_by", "qkv"},
                  {"family", model_dir::family_name(m->family())},
                  {"compute_type", ops::compute_type_name(m->compute_type())}};
    if (m->family() == model_dir::Family::vit) entry["classes"] = m->vit().config().classes;
    data.push_back(entry);
  }
  return {{"object", "list"}, {"data", data}};
}

}  // namespace qkv::serve
