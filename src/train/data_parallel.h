// Data-parallel training over MPI: `mpirun -np N qkv train ...` runs one training run as N
// ranks. Every rank walks the same sequence of batches and computes the gradients of its share
// of each update (the update's batch i is rank i % N's); the gradients are summed over the ranks
// with MPI_Allreduce on buckets of parameters, each started while backward still runs; then every
// rank takes the same optimizer step. Rank 0 alone writes the model directory and the log.
// A qkv built without MPI, or started without an MPI launcher, is one rank, and nothing here
// costs anything.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "nn/params.h"

namespace qkv::train {

// This process among the ranks of MPI_COMM_WORLD.
class Ranks {
 public:
  // Starts MPI when an MPI launcher started this process and qkv has MPI; else one rank. The
  // ranks above 0 keep quiet (their standard error goes to /dev/null, errors excepted: see
  // abort) unless QKV_LOG_ALL_RANKS=1. Once, first thing in main.
  static void init(int& argc, char**& argv);
  // Ends MPI after a normal run (every rank).
  static void finalize();
  static int rank();
  static int size();
  static bool root() { return rank() == 0; }
  // Prints "qkv: rank R of N: what" and stops every rank (MPI_Abort, exit code 1).
  [[noreturn]] static void abort(const std::string& what);

  // Collectives: every rank calls them in the same order.
  static void sum(std::vector<double>& values);  // in place
  static double broadcast(double value);         // rank 0's value
  // Waiting ranks sleep between polls, leaving their cores to the ranks still busy.
  static void barrier();
};

// The threads of one rank: `threads` when positive, else this machine's cores shared among its
// ranks (0, the default of tensor/threads.h, for a single rank).
int threads_per_rank(int64_t threads);

// Rank 0 prepares the model directory (tokenizer, config.yaml) before the other ranks read
// it: a trainer calls wait_for_root_setup() first thing, TrainingLoop's constructor
// root_setup_done() once rank 0 gets there; they meet in one barrier.
void wait_for_root_setup();
void root_setup_done();

// The gradients of one update: each forward pass's computed from zero and added in batch order
// (so that one rank with accumulate N sums exactly what N ranks' allreduce sums), then summed over
// the ranks in buckets of about bucket_mb megabytes, formed in reverse parameter order (the order
// backward completes them). A bucket's MPI_Iallreduce starts as soon as its gradients are
// complete and every bucket before it has started, so that buckets start in the same order on
// every rank.
class GradientSum {
 public:
  GradientSum(const nn::ParamList& params, double bucket_mb);
  ~GradientSum();
  // Before each forward pass of an update is recorded on `tape`: sets the earlier passes'
  // gradients aside (all but the `first` pass); before the `last` one of a data-parallel run,
  // arms the tape so that its backward pass starts the buckets whose gradients are complete.
  void begin_pass(Tape& tape, bool first, bool last);
  // After the update's last backward pass: the sum in the parameters' gradients.
  void finish();
  size_t buckets() const;
  // Seconds since the last take_timing(): buckets in flight (first start to last completion,
  // per update), and the part of it finish() waited after backward (not overlapped).
  struct Timing {
    double allreduce_s = 0, exposed_s = 0;
  };
  Timing take_timing();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace qkv::train
