#include "data/batcher.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "data/tokenizer.h"
#include "tensor/rng.h"

namespace qkv::data {
namespace {

// Random stream of one epoch: a counter range of its own for every epoch.
Rng epoch_rng(uint64_t seed, int64_t epoch) {
  return Rng(seed, uint64_t(epoch) << 40);
}

template <class T>
void shuffle(std::vector<T>& items, Rng& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng.below(i)]);
}

// [rows, width] i32, row r = sequences[r] (optionally with `first` before and `last` after),
// padded with pad_id; lengths gets each row's real length.
Tensor pad_rows(const std::vector<const std::vector<int32_t>*>& rows, int64_t width, int32_t pad_id,
                int32_t first, int32_t last, std::vector<int32_t>& lengths) {
  std::vector<int32_t> out(rows.size() * width, pad_id);
  lengths.assign(rows.size(), 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    int32_t* row = out.data() + r * width;
    int64_t n = 0;
    if (first >= 0) row[n++] = first;
    for (int32_t id : *rows[r]) row[n++] = id;
    if (last >= 0) row[n++] = last;
    lengths[r] = int32_t(n);
  }
  return Tensor::from_vector(out, {int64_t(rows.size()), width});
}

int64_t longest(const std::vector<const std::vector<int32_t>*>& rows) {
  int64_t n = 0;
  for (auto* r : rows) n = std::max(n, int64_t(r->size()));
  return n;
}

}  // namespace

Batch Batch::to(Device device) const {
  Batch b = *this;
  for (Tensor* t : {&b.src, &b.src_lengths, &b.tgt_in, &b.tgt_out, &b.tgt_lengths})
    if (t->defined()) *t = t->to(device);
  return b;
}

int64_t fit_sources(std::vector<std::vector<int32_t>>& sources, int64_t max_len, int32_t eos) {
  const int64_t most = eos >= 0 ? max_len - 1 : max_len;
  int64_t cut = 0;
  for (auto& s : sources) {
    if (s.empty()) continue;
    if (int64_t(s.size()) > most) {
      s.resize(size_t(most));
      ++cut;
    }
    if (eos >= 0) s.push_back(eos);
  }
  return cut;
}

Batch make_source_batch(const std::vector<std::vector<int32_t>>& sources, int32_t pad_id) {
  Batch batch;
  std::vector<const std::vector<int32_t>*> rows;
  for (auto& s : sources) rows.push_back(&s);
  std::vector<int32_t> lengths;
  int64_t width = std::max<int64_t>(1, longest(rows));
  batch.src = pad_rows(rows, width, pad_id, -1, -1, lengths);                // [B, S]
  batch.src_lengths = Tensor::from_vector(lengths, {int64_t(rows.size())});  // [B]
  for (size_t i = 0; i < sources.size(); ++i) batch.indices.push_back(int64_t(i));
  return batch;
}

Batcher::Batcher(std::vector<std::vector<int32_t>> src, std::vector<std::vector<int32_t>> tgt,
                 const BatcherOptions& options)
    : options_(options), src_(std::move(src)), tgt_(std::move(tgt)) {
  if (src_.size() != tgt_.size())
    throw std::invalid_argument("batcher: " + std::to_string(src_.size()) + " sources but " +
                                std::to_string(tgt_.size()) + " targets");
  if (options_.max_len < 2)
    throw std::invalid_argument("batcher: max_len must be at least 2, got " +
                                std::to_string(options_.max_len));
  if (options_.max_tokens < options_.max_len)
    throw std::invalid_argument("batcher: max_tokens (" + std::to_string(options_.max_tokens) +
                                ") must be at least max_len (" + std::to_string(options_.max_len) +
                                ") so that every pair fits a batch");
  if (options_.window_batches < 1)
    throw std::invalid_argument("batcher: window_batches must be at least 1");
  size_t max_src = size_t(options_.max_len), max_tgt = size_t(options_.max_len - 1);
  for (size_t i = 0; i < src_.size(); ++i) {
    if (src_[i].size() > max_src || tgt_[i].size() > max_tgt) ++truncated_;
    if (src_[i].size() > max_src) src_[i].resize(max_src);
    if (tgt_[i].size() > max_tgt) tgt_[i].resize(max_tgt);
    if (src_[i].empty())
      ++skipped_empty_;
    else
      usable_.push_back(int64_t(i));
  }
  if (usable_.empty()) throw std::invalid_argument("batcher: no sentence pair with a source");
}

int64_t Batcher::width(int64_t i) const {
  return std::max(int64_t(src_[i].size()), int64_t(tgt_[i].size()) + 1);
}

std::vector<std::vector<int64_t>> Batcher::epoch_plan(int64_t epoch) const {
  Rng rng = epoch_rng(options_.seed, epoch);
  std::vector<int64_t> order = usable_;
  if (options_.shuffle) shuffle(order, rng);

  std::vector<std::vector<int64_t>> batches;
  int64_t window_tokens = options_.window_batches * options_.max_tokens;
  for (size_t begin = 0; begin < order.size();) {
    size_t end = begin;
    for (int64_t tokens = 0; end < order.size() && tokens < window_tokens; ++end)
      tokens += width(order[end]);
    std::stable_sort(order.begin() + begin, order.begin() + end, [&](int64_t a, int64_t b) {
      if (src_[a].size() != src_[b].size()) return src_[a].size() < src_[b].size();
      return tgt_[a].size() < tgt_[b].size();
    });
    std::vector<int64_t> batch;
    int64_t batch_width = 0;
    for (size_t k = begin; k < end; ++k) {
      int64_t w = std::max(batch_width, width(order[k]));
      if (!batch.empty() && int64_t(batch.size() + 1) * w > options_.max_tokens) {
        batches.push_back(std::move(batch));
        batch.clear();
        w = width(order[k]);
      }
      batch.push_back(order[k]);
      batch_width = w;
    }
    batches.push_back(std::move(batch));
    begin = end;
  }
  if (options_.shuffle) shuffle(batches, rng);
  return batches;
}

const std::vector<std::vector<int64_t>>& Batcher::plan(int64_t epoch) {
  if (plan_epoch_ != epoch) {
    plan_ = epoch_plan(epoch);
    plan_epoch_ = epoch;
  }
  return plan_;
}

int64_t Batcher::batches_in_epoch(int64_t epoch) {
  return int64_t(plan(epoch).size());
}

Batch Batcher::next() {
  Batch batch = make_batch(plan(position_.epoch)[position_.batch]);
  batch.position = position_;
  skip();
  return batch;
}

void Batcher::skip() {
  if (++position_.batch == batches_in_epoch(position_.epoch)) position_ = {position_.epoch + 1, 0};
}

void Batcher::seek(const BatchPosition& position) {
  if (position.epoch < 0 || position.batch < 0 ||
      position.batch >= batches_in_epoch(position.epoch))
    throw std::invalid_argument("batcher: no batch " + std::to_string(position.batch) +
                                " in epoch " + std::to_string(position.epoch));
  position_ = position;
}

Batch Batcher::make_batch(const std::vector<int64_t>& indices) const {
  if (indices.empty()) throw std::invalid_argument("batcher: a batch needs at least one pair");
  Batch batch;
  batch.indices = indices;
  std::vector<const std::vector<int32_t>*> src_rows, tgt_rows;
  for (int64_t i : indices) {
    if (i < 0 || i >= int64_t(src_.size()))
      throw std::invalid_argument("batcher: pair index " + std::to_string(i) + " out of range");
    src_rows.push_back(&src_[i]);
    tgt_rows.push_back(&tgt_[i]);
  }
  int64_t rows = int64_t(indices.size());
  int64_t src_width = std::max<int64_t>(1, longest(src_rows)), tgt_width = longest(tgt_rows) + 1;
  std::vector<int32_t> src_lengths, tgt_lengths, unused;
  const BatcherOptions& o = options_;
  batch.src = pad_rows(src_rows, src_width, o.pad_id, -1, -1, src_lengths);           // [B, S]
  batch.tgt_in = pad_rows(tgt_rows, tgt_width, o.pad_id, o.bos_id, -1, tgt_lengths);  // [B, T]
  batch.tgt_out = pad_rows(tgt_rows, tgt_width, o.pad_id, -1, o.eos_id, unused);      // [B, T]
  batch.src_lengths = Tensor::from_vector(src_lengths, {rows});                       // [B]
  batch.tgt_lengths = Tensor::from_vector(tgt_lengths, {rows});                       // [B]
  for (int32_t n : tgt_lengths) batch.n_tgt_tokens += n;
  return batch;
}

void report_batcher(const std::string& name, Batcher& batcher) {
  int64_t epoch = batcher.position().epoch;
  std::fprintf(stderr, "%s: %lld pairs, %lld batches in epoch %lld\n", name.c_str(),
               (long long)batcher.pairs(), (long long)batcher.batches_in_epoch(epoch),
               (long long)epoch);
  if (batcher.truncated() > 0)
    std::fprintf(stderr, "warning: %s: truncated %lld pairs longer than max_len\n", name.c_str(),
                 (long long)batcher.truncated());
  if (batcher.skipped_empty() > 0)
    std::fprintf(stderr, "warning: %s: skipped %lld pairs with an empty source\n", name.c_str(),
                 (long long)batcher.skipped_empty());
}

}  // namespace qkv::data
