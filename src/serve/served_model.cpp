#include "serve/served_model.h"

#include <stdexcept>

#include "model_dir/quantized_weights.h"
#include "model_dir/vit_dir.h"
#include "serve/jobs.h"
#include "tensor/threads.h"

namespace qkv::serve {

namespace {

// One batch at a time over all models: each already uses every core it is given.
std::mutex compute_mutex;

template <class J>
J& as(const std::shared_ptr<Job>& job) {
  return static_cast<J&>(*job);
}

}  // namespace

ServedModel::ServedModel(std::string name, const std::string& dir, const std::string& checkpoint,
                         Device device, BatchingOptions batching, const std::string& compute_type)
    : name_(std::move(name)),
      family_(model_dir::family(dir)),
      batch_tokens_(batching.max_batch_tokens),
      queue_(batching) {
  switch (family_) {
    case model_dir::Family::seq2seq: {
      translation_ = model_dir::load_translation_dir(dir, checkpoint);
      translation_.model->to(device);
      compute_type_ = model_dir::apply_compute_type(compute_type, dir, checkpoint, device,
                                                    translation_.model->linears());
      decode::TranslatorOptions options;
      options.compute_type = compute_type_;
      translator_ = std::make_unique<decode::Translator>(*translation_.model,
                                                         *translation_.tokenizer, options);
      break;
    }
    case model_dir::Family::gpt:
      language_model_ = model_dir::load_language_model_dir(dir, checkpoint);
      language_model_.model->to(device);
      compute_type_ = model_dir::apply_compute_type(compute_type, dir, checkpoint, device,
                                                    language_model_.model->linears());
      packed_gpt_ =
          std::make_shared<const nn::PackedGpt>(language_model_.model->pack(compute_type_));
      break;
    case model_dir::Family::vit:
      vit_ = model_dir::load_vit_dir(dir, checkpoint);
      vit_->to(device);
      compute_type_ =
          model_dir::apply_compute_type(compute_type, dir, checkpoint, device, vit_->linears());
      break;
  }
}

ServedModel::~ServedModel() {
  stop();
}

void ServedModel::start(Metrics& metrics, int threads) {
  worker_ = std::thread([this, &metrics, threads] { work(metrics, threads); });
}

void ServedModel::stop() {
  queue_.close();
  if (worker_.joinable()) worker_.join();
}

void ServedModel::work(Metrics& metrics, int threads) {
  set_num_threads(threads);  // OpenMP's thread count is per thread
  for (;;) {
    std::vector<std::shared_ptr<Job>> batch = queue_.take();
    if (batch.empty()) return;
    std::lock_guard lock(compute_mutex);
    auto start = Clock::now();
    Produced produced = run(batch);
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    metrics.count_batch(name_, int64_t(batch.size()), produced.items, produced.tokens, seconds);
  }
}

ServedModel::Produced ServedModel::run(const std::vector<std::shared_ptr<Job>>& batch) {
  try {
    Produced produced;
    switch (family_) {
      case model_dir::Family::seq2seq:
        produced = translate(batch);
        break;
      case model_dir::Family::gpt:
        produced = complete(batch);
        break;
      case model_dir::Family::vit:
        produced = classify(batch);
        break;
    }
    for (const auto& job : batch) job->finish();
    return produced;
  } catch (const std::exception& e) {
    // One request's input can fail a batch (a prompt the tokenizer refuses): each runs alone,
    // so that only its own request fails.
    if (batch.size() > 1) {
      Produced total;
      for (const auto& job : batch) {
        Produced p = run({job});
        total.items += p.items, total.tokens += p.tokens;
      }
      return total;
    }
    bool their_input = dynamic_cast<const std::invalid_argument*>(&e) != nullptr;
    batch[0]->fail(their_input ? 400 : 500, e.what());
    return {};
  }
}

ServedModel::Produced ServedModel::translate(const std::vector<std::shared_ptr<Job>>& batch) {
  std::vector<std::string> sentences;
  for (const auto& job : batch) {
    const auto& mine = as<TranslationJob>(job).sentences;
    sentences.insert(sentences.end(), mine.begin(), mine.end());
  }
  auto results =
      translator_->translate(sentences, as<TranslationJob>(batch[0]).search, batch_tokens_);
  Produced produced{int64_t(sentences.size()), 0};
  size_t next = 0;
  for (const auto& job : batch) {
    TranslationJob& t = as<TranslationJob>(job);
    for (size_t i = 0; i < t.sentences.size(); ++i, ++next) {
      produced.tokens += int64_t(results[next][0].tokens.size());
      t.results.push_back(std::move(results[next]));
    }
  }
  return produced;
}

ServedModel::Produced ServedModel::complete(const std::vector<std::shared_ptr<Job>>& batch) {
  const CompletionJob& first = as<CompletionJob>(batch[0]);
  size_t samples = size_t(first.options.num_samples);
  std::vector<std::string> prompts;
  std::vector<decode::SampleStream> streams;
  std::vector<size_t> first_sequence;  // per job, its first sequence in the batch
  for (const auto& job : batch) {
    const CompletionJob& c = as<CompletionJob>(job);
    first_sequence.push_back(prompts.size() * samples);
    for (size_t p = 0; p < c.prompts.size(); ++p) {
      prompts.push_back(c.prompts[p]);
      streams.push_back({c.seed, p * samples});  // as if the request ran alone
    }
  }
  decode::GenerationOptions options = first.options;
  options.batch_size = int64_t(prompts.size() * samples);
  decode::Generator generator(*language_model_.model, *language_model_.tokenizer, options,
                              packed_gpt_);
  auto on_text = [&](size_t sequence, const std::string& text) {
    size_t j = size_t(std::upper_bound(first_sequence.begin(), first_sequence.end(), sequence) -
                      first_sequence.begin()) -
               1;
    const CompletionJob& c = as<CompletionJob>(batch[j]);
    if (c.stream) c.stream->add(sequence - first_sequence[j], text);
  };
  auto results = generator.generate(prompts, on_text, streams);
  Produced produced{int64_t(results.size()), 0};
  size_t next = 0;
  for (const auto& job : batch) {
    CompletionJob& c = as<CompletionJob>(job);
    for (size_t i = 0; i < c.prompts.size() * samples; ++i, ++next) {
      produced.tokens += results[next].new_tokens;
      c.results.push_back(std::move(results[next]));
    }
  }
  return produced;
}

ServedModel::Produced ServedModel::classify(const std::vector<std::shared_ptr<Job>>& batch) {
  std::vector<Tensor> images;
  for (const auto& job : batch) {
    const auto& mine = as<ClassificationJob>(job).images;
    images.insert(images.end(), mine.begin(), mine.end());
  }
  // Every class of every image; each request keeps its top k.
  auto results = eval::classify_images(*vit_, images, vit_->config().num_classes());
  size_t next = 0;
  for (const auto& job : batch) {
    ClassificationJob& c = as<ClassificationJob>(job);
    for (size_t i = 0; i < c.images.size(); ++i, ++next) {
      results[next].resize(size_t(std::min<int64_t>(c.top_k, int64_t(results[next].size()))));
      c.results.push_back(std::move(results[next]));
    }
  }
  return {int64_t(images.size()), 0};
}

}  // namespace qkv::serve
