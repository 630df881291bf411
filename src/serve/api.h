// The endpoints' request and response bodies (README, "Serving over HTTP"): each parses its
// request, queues a job with the model it names, waits for it and builds the response. Bad
// requests are HttpError naming the field; nothing here knows HTTP beyond status codes (the
// transport is server.h).
#pragma once
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "serve/jobs.h"
#include "serve/json_fields.h"
#include "serve/served_model.h"

namespace qkv::serve {

// What one request may ask.
struct RequestLimits {
  int64_t max_items = 64;                    // sentences, prompts x n, or images per request
  int64_t max_text_bytes = 10000;            // per sentence or prompt
  int64_t max_new_tokens = 1024;             // max_tokens of a completion
  std::chrono::milliseconds timeout{60000};  // from arrival to the result

  // HttpError naming `field`: 400 when `count` is 0, 413 above max_items. `what` names the
  // items ("sentences").
  void check_items(const std::string& field, size_t count, const std::string& what) const;
  // HttpError 413 naming `field` when `text` is longer than max_text_bytes.
  void check_text(const std::string& field, const std::string& text) const;
};

// The served models, found by name and family.
class ModelSet {
 public:
  explicit ModelSet(std::vector<std::unique_ptr<ServedModel>> models);
  // The model `name` (it must be of `family`), or the first of `family` when name is empty.
  // HttpError 404 naming the field "model" otherwise.
  ServedModel& find(const std::optional<std::string>& name, model_dir::Family family) const;
  const std::vector<std::unique_ptr<ServedModel>>& all() const { return models_; }

 private:
  std::vector<std::unique_ptr<ServedModel>> models_;
};

// Waits for `job` until `limits.timeout` after it arrived: HttpError 504 on timeout, and the
// job's own error if it failed.
void wait_for(Job& job, const RequestLimits& limits);

// POST /v1/translate and LibreTranslate's POST /translate.
Json translate(const Json& request, const ModelSet& models, const RequestLimits& limits);
Json libre_translate(const Json& request, const ModelSet& models, const RequestLimits& limits);

// POST /v1/completions: start() parses and queues; then either response() after wait_for, or,
// for "stream": true, the events as the text comes (server-sent events, OpenAI's shape).
struct Completion {
  std::shared_ptr<CompletionJob> job;
  std::string model, id;
  int64_t created = 0;
  bool stream = false;

  static Completion start(const Json& request, const ModelSet& models, const RequestLimits& limits);
  Json response() const;
  // One "data: {...}\n\n" event: a piece of choice `index`, or (finish_reason set) its end.
  std::string event(size_t index, const std::string& text, const char* finish_reason) const;
  // The final events after the job finished: each choice's finish_reason, then [DONE].
  std::string closing_events() const;
};

// POST /v1/classify: a JSON body (base64 images) or an image file as the body, whose model and
// top_k come from the query string.
Json classify_json(const Json& request, const ModelSet& models, const RequestLimits& limits);
Json classify_file(const std::string& bytes, const std::optional<std::string>& model,
                   const std::optional<std::string>& top_k, const ModelSet& models,
                   const RequestLimits& limits);

// GET /v1/models.
Json list_models(const ModelSet& models);

}  // namespace qkv::serve
