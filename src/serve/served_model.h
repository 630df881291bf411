// A model the server answers with: loaded from its directory (any family), the queue of the
// requests waiting for it, and the worker thread that runs them in batches (batch_queue.h).
// Batches of all models take turns on the cores: one runs at a time.
#pragma once
#include <memory>
#include <string>
#include <thread>

#include "decode/translator.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/model_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "nn/vit.h"
#include "serve/batch_queue.h"
#include "serve/metrics.h"

namespace qkv::serve {

class ServedModel {
 public:
  // Loads the model of `dir` (its `checkpoint` weights) onto `device`; errors name the directory.
  // compute_type: as --compute-type ("" : the weights' own, model_dir::compute_type_for).
  ServedModel(std::string name, const std::string& dir, const std::string& checkpoint,
              Device device, BatchingOptions batching, const std::string& compute_type = "");
  ~ServedModel();

  const std::string& name() const { return name_; }
  model_dir::Family family() const { return family_; }
  ops::ComputeType compute_type() const { return compute_type_; }
  // The family's model (only that family's is set).
  const model_dir::TranslationModel& translation() const { return translation_; }
  const model_dir::LanguageModel& language_model() const { return language_model_; }
  const nn::ViT& vit() const { return *vit_; }

  // Starts the worker, whose batches run on `threads` threads (0: all cores).
  void start(Metrics& metrics, int threads);
  // Queues a job of this model's family (BatchQueue::push's errors).
  void submit(std::shared_ptr<Job> job) { queue_.push(std::move(job)); }
  size_t waiting() const { return queue_.size(); }
  // Refuses new jobs, runs those queued, and joins the worker.
  void stop();

 private:
  void work(Metrics& metrics, int threads);
  // Runs a batch of jobs of one group; the items and tokens it produced, for the metrics.
  struct Produced {
    int64_t items = 0, tokens = 0;
  };
  Produced run(const std::vector<std::shared_ptr<Job>>& batch);
  Produced translate(const std::vector<std::shared_ptr<Job>>& batch);
  Produced complete(const std::vector<std::shared_ptr<Job>>& batch);
  Produced classify(const std::vector<std::shared_ptr<Job>>& batch);

  std::string name_;
  model_dir::Family family_;
  ops::ComputeType compute_type_ = ops::ComputeType::f32;
  model_dir::TranslationModel translation_;
  std::unique_ptr<decode::Translator> translator_;  // packs the weights once
  int64_t batch_tokens_;
  model_dir::LanguageModel language_model_;
  std::shared_ptr<const nn::PackedGpt> packed_gpt_;
  std::unique_ptr<nn::ViT> vit_;
  BatchQueue queue_;
  std::thread worker_;
};

}  // namespace qkv::serve
