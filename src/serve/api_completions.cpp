// POST /v1/completions in OpenAI's shape.
#include <atomic>
#include <ctime>

#include "serve/api.h"

namespace qkv::serve {

namespace {

// OpenAI's fields that qkv accepts only at their neutral value: a client that sends them as
// defaults works, one that asks for what qkv does not do is told so.
void check_neutral(const Json& request) {
  auto is = [&](const char* field, auto neutral) {
    auto it = request.find(field);
    return it == request.end() || it->is_null() || *it == neutral;
  };
  for (const char* field : {"presence_penalty", "frequency_penalty"})
    if (!is(field, 0)) throw HttpError(400, field, std::string("'") + field + "' is not supported");
  if (!is("echo", false)) throw HttpError(400, "echo", "'echo' is not supported");
  if (!is("logprobs", 0)) throw HttpError(400, "logprobs", "'logprobs' is not supported");
  if (!is("suffix", "")) throw HttpError(400, "suffix", "'suffix' is not supported");
  if (!is("best_of", 1)) throw HttpError(400, "best_of", "'best_of' is not supported");
  if (!is("logit_bias", Json::object()))
    throw HttpError(400, "logit_bias", "'logit_bias' is not supported");
}

// A seed for a request without one: different for every request.
uint64_t fresh_seed() {
  static std::atomic<uint64_t> counter{0};
  return uint64_t(std::time(nullptr)) * 1000003u + counter++;
}

std::string next_id() {
  static std::atomic<uint64_t> counter{0};
  return "cmpl-qkv-" + std::to_string(std::time(nullptr)) + "-" + std::to_string(counter++);
}

// OpenAI's reasons: "stop" for a stop string or the end-of-text token, "length" otherwise.
const char* openai_reason(const std::string& reason) {
  return reason == "length" ? "length" : "stop";
}

}  // namespace

Completion Completion::start(const Json& request, const ModelSet& models,
                             const RequestLimits& limits) {
  check_fields(request, {"model",
                         "prompt",
                         "max_tokens",
                         "temperature",
                         "top_p",
                         "top_k",
                         "min_p",
                         "n",
                         "stop",
                         "seed",
                         "stream",
                         "repetition_penalty",
                         "user",
                         "presence_penalty",
                         "frequency_penalty",
                         "echo",
                         "logprobs",
                         "suffix",
                         "best_of",
                         "logit_bias"});
  check_neutral(request);
  ServedModel& model = models.find(optional_string(request, "model"), model_dir::Family::gpt);
  Strings prompts = strings_field(request, "prompt");
  auto job = std::make_shared<CompletionJob>();
  decode::GenerationOptions& o = job->options;
  o.max_new_tokens = integer_field(request, "max_tokens", 16, 1, limits.max_new_tokens);
  o.num_samples = integer_field(request, "n", 1, 1, limits.max_items);
  o.sampling.temperature = float(number_field(request, "temperature", 1.0, 0.0, 100.0));
  o.sampling.top_p = float(number_field(request, "top_p", 1.0, 0.0, 1.0));
  o.sampling.top_k = integer_field(request, "top_k", 0, 0, 1 << 30);
  o.sampling.min_p = float(number_field(request, "min_p", 0.0, 0.0, 1.0));
  o.sampling.repetition_penalty =
      float(number_field(request, "repetition_penalty", 1.0, 0.01, 100.0));
  o.stop = strings_field(request, "stop", false).values;
  for (size_t i = 0; i < o.stop.size(); ++i)
    if (o.stop[i].empty()) throw HttpError(400, "stop", "a stop string must not be empty");
  if (o.stop.size() > 4) throw HttpError(400, "stop", "at most 4 stop strings");
  job->seed = uint64_t(integer_field(request, "seed", int64_t(fresh_seed() >> 1), 0, INT64_MAX));
  limits.check_items("prompt", prompts.values.size() * size_t(o.num_samples),
                     "sequences (prompts x n)");
  const data::LmTokenizer& tokenizer = *model.language_model().tokenizer;
  for (size_t i = 0; i < prompts.values.size(); ++i) {
    limits.check_text(prompts.name(i), prompts.values[i]);
    try {
      job->cost +=
          (int64_t(tokenizer.encode(prompts.values[i]).size()) + o.max_new_tokens) * o.num_samples;
    } catch (const std::invalid_argument& e) {
      throw HttpError(400, prompts.name(i), "'" + prompts.name(i) + "': " + e.what());
    }
  }
  try {
    o.check();
  } catch (const std::invalid_argument& e) {
    throw HttpError(400, "", e.what());
  }
  job->prompts = prompts.values;
  // Requests batch when everything but the seed agrees.
  Json group = {o.max_new_tokens, o.num_samples,    o.sampling.temperature,        o.sampling.top_p,
                o.sampling.top_k, o.sampling.min_p, o.sampling.repetition_penalty, o.stop};
  job->group = group.dump();
  Completion c;
  c.stream = bool_field(request, "stream", false);
  if (c.stream) job->stream = std::make_shared<TextStream>();
  c.job = job, c.model = model.name(), c.id = next_id(), c.created = int64_t(std::time(nullptr));
  model.submit(job);
  return c;
}

Json Completion::response() const {
  Json choices = Json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  size_t samples = size_t(job->options.num_samples);
  for (size_t i = 0; i < job->results.size(); ++i) {
    const decode::Generation& g = job->results[i];
    choices.push_back({{"text", g.text},
                       {"index", i},
                       {"logprobs", nullptr},
                       {"finish_reason", openai_reason(g.finish_reason)}});
    if (i % samples == 0) prompt_tokens += g.prompt_tokens;
    completion_tokens += g.new_tokens;
  }
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", choices},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

std::string Completion::event(size_t index, const std::string& text,
                              const char* finish_reason) const {
  Json choice = {{"text", text},
                 {"index", index},
                 {"logprobs", nullptr},
                 {"finish_reason", finish_reason ? Json(finish_reason) : Json(nullptr)}};
  Json chunk = {{"id", id},
                {"object", "text_completion"},
                {"created", created},
                {"model", model},
                {"choices", Json::array({choice})}};
  return "data: " + chunk.dump() + "\n\n";
}

std::string Completion::closing_events() const {
  std::string out;
  for (size_t i = 0; i < job->results.size(); ++i)
    out += event(i, "", openai_reason(job->results[i].finish_reason));
  return out + "data: [DONE]\n\n";
}

}  // namespace qkv::serve
