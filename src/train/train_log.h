// What training reports: a line every disp-freq updates in the field's convention (Marian's),
// a line per validation, a machine-readable copy of both in <model-dir>/metrics.jsonl, and a
// progress bar between lines when standard error is a terminal.
#pragma once
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "train/moe_tally.h"

namespace qkv::train {

// What a run counts, in its log lines and metrics.jsonl keys: examples (sentences, images) and
// the items of the throughput and of the loss average (target tokens, images).
struct LogUnits {
  std::string examples = "Sen.", examples_key = "sentences";
  std::string items = "tgt tokens", items_key = "tgt_tokens_per_s";
};

// Data-parallel runs: the gradient allreduce per update, and the part backward did not hide.
struct AllreduceStats {
  double ms = 0, exposed_ms = 0;
};

struct UpdateStats {
  int64_t epoch = 0, update = 0, examples = 0;
  double loss = 0;  // label-smoothed cross-entropy per item (target token, image)
  double learning_rate = 0, grad_norm = 0;
  double items_per_s = 0, elapsed_s = 0;
  std::optional<MoeStats> moe;              // Mixture-of-Experts models only
  std::optional<AllreduceStats> allreduce;  // more than one rank only
};

struct ValidStats {
  int64_t epoch = 0, update = 0;
  double loss = 0;
  // Scores by name, logged in this order ("BLEU", "chrF", "accuracy"); metrics.jsonl keys are
  // the names in lower case.
  std::vector<std::pair<std::string, double>> scores;
  bool best = false;
  int64_t stalled = 0;
};

// Of the ranks of a data-parallel run (train/data_parallel.h), rank 0 alone writes
// metrics.jsonl; the others' lines say their rank.
class TrainLog {
 public:
  explicit TrainLog(const std::string& model_dir, LogUnits units = {});
  ~TrainLog();
  void update(const UpdateStats& s);
  void validation(const ValidStats& s);
  // A free-form line (also into metrics.jsonl as {"event": ...}).
  void note(const std::string& event, const std::string& text);
  // Redraws the progress bar: `done` of `total` updates towards the next log line.
  void progress(int64_t done, int64_t total, int64_t update);

 private:
  void line(const std::string& text);
  void json(const std::string& text);
  LogUnits units_;
  std::FILE* metrics_ = nullptr;
  bool terminal_;
  bool bar_shown_ = false;
};

}  // namespace qkv::train
