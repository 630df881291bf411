// What one request asks of a model and what it gets back, per family. The request's thread
// fills in the inputs, the model's worker (served_model.h) the results.
#pragma once
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "decode/generator.h"
#include "decode/translator.h"
#include "eval/image_eval.h"
#include "serve/batch_queue.h"

namespace qkv::serve {

struct TranslationJob : Job {
  std::vector<std::string> sentences;
  decode::SearchOptions search;
  std::vector<std::vector<decode::Translation>> results;  // per sentence, n-best
};

// Pieces of generated text as they become final, for a streaming response: the worker adds,
// the request's thread takes.
class TextStream {
 public:
  struct Piece {
    size_t sequence;
    std::string text;
  };
  void add(size_t sequence, std::string text);
  // Waits up to `wait` for pieces; returns those there are (possibly none).
  std::vector<Piece> take(std::chrono::milliseconds wait);

 private:
  std::mutex mutex_;
  std::condition_variable added_;
  std::deque<Piece> pieces_;
};

struct CompletionJob : Job {
  std::vector<std::string> prompts;
  decode::GenerationOptions options;  // num_samples: n
  uint64_t seed = 0;
  std::vector<decode::Generation> results;  // prompt i's sample j at i * n + j
  std::shared_ptr<TextStream> stream;       // set for a streaming request
};

struct ClassificationJob : Job {
  std::vector<Tensor> images;  // u8 [C, H, W], the model's shape
  int64_t top_k = 5;
  std::vector<std::vector<eval::ClassScore>> results;
};

}  // namespace qkv::serve
