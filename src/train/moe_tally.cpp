#include "train/moe_tally.h"

#include <algorithm>
#include <cstdio>

#include "train/data_parallel.h"

namespace qkv::train {

void MoeTally::add(const nn::MoeRecord& record) {
  if (record.layers.empty()) return;
  ++passes_;
  if (choices_.size() < record.layers.size()) choices_.resize(record.layers.size());
  for (size_t i = 0; i < record.layers.size(); ++i) {
    const nn::MoeLayerRecord& l = record.layers[i];
    ++layer_passes_;
    aux_ += l.aux_loss.value().item(), z_ += l.z_loss.value().item();
    assignments_ += l.assignments, dropped_ += l.dropped;
    std::vector<int64_t>& c = choices_[i];
    if (c.size() < l.expert_choices.size()) c.resize(l.expert_choices.size(), 0);
    for (size_t e = 0; e < l.expert_choices.size(); ++e) c[e] += l.expert_choices[e];
  }
}

MoeStats MoeTally::stats() const {
  MoeStats s;
  if (empty()) return s;
  s.aux_loss = aux_ / double(layer_passes_), s.z_loss = z_ / double(layer_passes_);
  s.dropped = assignments_ ? double(dropped_) / double(assignments_) : 0.0;
  for (const auto& layer : choices_) {
    int64_t total = 0;
    for (int64_t c : layer) total += c;
    std::vector<double> shares;
    for (int64_t c : layer) shares.push_back(total ? double(c) / double(total) : 0.0);
    s.load.push_back(std::move(shares));
  }
  return s;
}

void MoeTally::sum_over_ranks() {
  if (Ranks::size() == 1 || empty()) return;  // empty on every rank alike (the same model)
  std::vector<double> all{double(passes_),      double(layer_passes_), aux_, z_,
                          double(assignments_), double(dropped_)};
  for (const auto& layer : choices_) all.insert(all.end(), layer.begin(), layer.end());
  Ranks::sum(all);
  passes_ = int64_t(all[0]), layer_passes_ = int64_t(all[1]), aux_ = all[2], z_ = all[3];
  assignments_ = int64_t(all[4]), dropped_ = int64_t(all[5]);
  size_t i = 6;
  for (auto& layer : choices_)
    for (int64_t& c : layer) c = int64_t(all[i++]);
}

std::string MoeTally::summary() const {
  MoeStats s = stats();
  double low = 1, high = 0;
  for (const auto& layer : s.load)
    for (double share : layer) low = std::min(low, share), high = std::max(high, share);
  char text[256];
  std::snprintf(text, sizeof text,
                "aux loss %.4f, z-loss %.4f, %.2f%% of assignments dropped, expert load %.1f%% "
                "to %.1f%% of choices over %zu layers",
                s.aux_loss, s.z_loss, 100 * s.dropped, 100 * low, 100 * high, s.load.size());
  return text;
}

}  // namespace qkv::train
