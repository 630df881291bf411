// What Mixture-of-Experts layers report over a stretch of training (a log line, the updates
// between validations): the mean auxiliary and z losses, the share of assignments dropped over
// capacity and each layer's expert load.
#pragma once
#include <string>
#include <vector>

#include "nn/moe.h"

namespace qkv::train {

struct MoeStats {
  double aux_loss = 0, z_loss = 0;  // means over forward passes and MoE layers
  double dropped = 0;               // fraction of the assignments
  // Per MoE layer (in the order the forward pass met them): each expert's share of the choices.
  std::vector<std::vector<double>> load;
};

class MoeTally {
 public:
  // One forward pass's record (its losses already computed).
  void add(const nn::MoeRecord& record);
  bool empty() const { return passes_ == 0; }
  MoeStats stats() const;
  // "aux loss 1.013, z-loss 0.512, 0.00% of assignments dropped, expert load 9.8% to 15.1%".
  std::string summary() const;
  void clear() { *this = MoeTally(); }
  // Adds up the tallies of every rank of a data-parallel run (a collective: all ranks call it
  // on tallies of the same model).
  void sum_over_ranks();

 private:
  int64_t passes_ = 0, layer_passes_ = 0;
  double aux_ = 0, z_ = 0;
  int64_t assignments_ = 0, dropped_ = 0;
  std::vector<std::vector<int64_t>> choices_;  // [layer][expert]
};

}  // namespace qkv::train
