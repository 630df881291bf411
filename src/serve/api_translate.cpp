// POST /v1/translate and LibreTranslate's POST /translate.
#include "serve/api.h"

namespace qkv::serve {

namespace {

// Checks the sentences against the limits and queues their job.
std::shared_ptr<TranslationJob> queue_sentences(const Strings& text,
                                                const decode::SearchOptions& search,
                                                ServedModel& model, const RequestLimits& limits) {
  limits.check_items(text.field, text.values.size(), "sentences");
  auto job = std::make_shared<TranslationJob>();
  const data::Tokenizer& tokenizer = *model.translation().tokenizer;
  job->cost = 0;
  for (size_t i = 0; i < text.values.size(); ++i) {
    limits.check_text(text.name(i), text.values[i]);
    job->cost += int64_t(tokenizer.encode(text.values[i]).size()) + 1;
  }
  job->sentences = text.values;
  job->search = search;
  job->group = "beam " + std::to_string(search.beam) + " n " + std::to_string(search.n_best) +
               " lp " + std::to_string(search.length_penalty) + " max " +
               std::to_string(search.max_length);
  model.submit(job);
  wait_for(*job, limits);
  return job;
}

}  // namespace

Json translate(const Json& request, const ModelSet& models, const RequestLimits& limits) {
  check_fields(request, {"model", "text", "beam", "n_best", "length_penalty", "max_length"});
  ServedModel& model = models.find(optional_string(request, "model"), model_dir::Family::seq2seq);
  Strings text = strings_field(request, "text");
  decode::SearchOptions search;
  search.beam = int(integer_field(request, "beam", 1, 1, 64));
  search.n_best = int(integer_field(request, "n_best", 1, 1, search.beam));
  search.length_penalty = float(number_field(request, "length_penalty", 1.0, 0.0, 10.0));
  search.max_length = integer_field(request, "max_length", search.max_length, 1, 4096);
  auto job = queue_sentences(text, search, model, limits);
  Json translations = Json::array(), scores = Json::array(), n_best = Json::array();
  for (const auto& hyps : job->results) {
    translations.push_back(hyps[0].text);
    scores.push_back(hyps[0].score);
    Json list = Json::array();
    for (const auto& h : hyps) list.push_back({{"text", h.text}, {"score", h.score}});
    n_best.push_back(list);
  }
  Json response = {{"model", model.name()}, {"translations", translations}, {"scores", scores}};
  if (search.n_best > 1) response["n_best"] = n_best;
  return response;
}

Json libre_translate(const Json& request, const ModelSet& models, const RequestLimits& limits) {
  check_fields(request, {"q", "source", "target", "format", "api_key", "model", "alternatives"});
  auto source = optional_string(request, "source"), target = optional_string(request, "target");
  if (!source) throw HttpError(400, "source", "'source' is missing (a language code or auto)");
  if (!target) throw HttpError(400, "target", "'target' is missing (a language code)");
  if (optional_string(request, "format").value_or("text") != "text")
    throw HttpError(400, "format", "only 'format': 'text' is supported");
  integer_field(request, "alternatives", 0, 0, 0);
  // The model: named, else one named "<source>-<target>", else the first translation model.
  std::optional<std::string> name = optional_string(request, "model");
  if (!name)
    for (const auto& m : models.all())
      if (m->name() == *source + "-" + *target) name = m->name();
  ServedModel& model = models.find(name, model_dir::Family::seq2seq);
  Strings q = strings_field(request, "q");
  auto job = queue_sentences(q, decode::SearchOptions{}, model, limits);
  if (!q.was_list) return {{"translatedText", job->results[0][0].text}};
  Json texts = Json::array();
  for (const auto& hyps : job->results) texts.push_back(hyps[0].text);
  return {{"translatedText", texts}};
}

}  // namespace qkv::serve
