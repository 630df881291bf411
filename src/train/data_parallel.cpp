#include "train/data_parallel.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "ops/ops.h"

#ifdef QKV_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C interface only (the C++ bindings need their own library)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace qkv::train {

using Clock = std::chrono::steady_clock;

namespace {

int g_rank = 0, g_size = 1, g_local_size = 1;  // local: the ranks on this machine
int g_error_fd = STDERR_FILENO;  // where abort() writes: the launcher's standard error

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void write_error(const std::string& text) {
  std::string line = text + "\n";
  for (size_t done = 0; done < line.size();) {
    ssize_t n = ::write(g_error_fd, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += size_t(n);
  }
}

bool started_by_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

#ifdef QKV_WITH_MPI
// Polls `request` until it completes: a few quick tests, then sleeps growing to 1 ms between
// them, so that a rank waiting for a slower one (rank 0 preparing the model directory) leaves
// the CPU to it.
void wait_sleeping(MPI_Request request) {
  auto pause = std::chrono::microseconds(0);
  for (;;) {
    int done = 0;
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
    pause = std::min(std::chrono::microseconds(1000), pause + std::chrono::microseconds(20));
  }
}
#endif

}  // namespace

void Ranks::init(int& argc, char**& argv) {
#ifdef QKV_WITH_MPI
  if (!started_by_launcher()) return;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &g_local_size);
  MPI_Comm_free(&local);
  const char* all = std::getenv("QKV_LOG_ALL_RANKS");
  if (g_rank > 0 && !(all != nullptr && std::string(all) == "1")) {
    g_error_fd = ::dup(STDERR_FILENO);
    int null = ::open("/dev/null", O_WRONLY);
    if (g_error_fd >= 0 && null >= 0) ::dup2(null, STDERR_FILENO);
    if (null >= 0) ::close(null);
    if (g_error_fd < 0) g_error_fd = STDERR_FILENO;
  }
#else
  (void)argc, (void)argv;
#endif
}

void Ranks::finalize() {
#ifdef QKV_WITH_MPI
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Finalize();
#endif
}

int Ranks::rank() {
  return g_rank;
}

int Ranks::size() {
  return g_size;
}

void Ranks::abort(const std::string& what) {
  write_error("qkv: rank " + std::to_string(g_rank) + " of " + std::to_string(g_size) + ": " +
              what);
#ifdef QKV_WITH_MPI
  MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  std::exit(1);
}

void Ranks::sum(std::vector<double>& values) {
  if (g_size == 1) return;
#ifdef QKV_WITH_MPI
  MPI_Allreduce(MPI_IN_PLACE, values.data(), int(values.size()), MPI_DOUBLE, MPI_SUM,
                MPI_COMM_WORLD);
#endif
}

double Ranks::broadcast(double value) {
  if (g_size == 1) return value;
#ifdef QKV_WITH_MPI
  MPI_Bcast(&value, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
#endif
  return value;
}

void Ranks::barrier() {
  if (g_size == 1) return;
#ifdef QKV_WITH_MPI
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  wait_sleeping(request);
#endif
}

int threads_per_rank(int64_t threads) {
  if (threads > 0 || g_size == 1) return int(threads);
  return std::max(1, int(std::thread::hardware_concurrency()) / g_local_size);
}

void wait_for_root_setup() {
  if (!Ranks::root()) Ranks::barrier();
}

void root_setup_done() {
  if (Ranks::root()) Ranks::barrier();
}

// ---------------------------------------------------------------------------------------------

struct GradientSum::State {
  struct Bucket {
    std::vector<size_t> vars;  // indices into `vars`, in the order they sit in `buffer`
    Tensor buffer;             // f32 [numel] on the host: the gradients, then their sums
    size_t pending = 0;        // gradients not yet complete in this backward pass
#ifdef QKV_WITH_MPI
    MPI_Request request = MPI_REQUEST_NULL;
#endif
  };
  std::vector<Var> vars;          // the distinct parameters (tied ones once)
  std::vector<Tensor> earlier;    // per var: the sum of the update's earlier passes, or none
  std::vector<size_t> bucket_of;  // per var
  std::vector<Bucket> buckets;    // in start order
  size_t next_to_start = 0;
  bool in_flight = false;  // this update has started buckets
  Clock::time_point first_start;
  double allreduce_s = 0, exposed_s = 0;

  // Adds the earlier passes' sum to the gradient of var (complete), once.
  void fold(size_t v) {
    if (!earlier[v].defined()) return;
    ops::axpy(1.f, earlier[v], vars[v].grad());
    earlier[v] = Tensor();
  }

  // Starts the buckets, in order, whose gradients are all complete.
  void complete(size_t v) {
    --buckets[bucket_of[v]].pending;
    while (next_to_start < buckets.size() && buckets[next_to_start].pending == 0)
      start(buckets[next_to_start++]);
  }

  void start(Bucket& b) {
    if (!in_flight) first_start = Clock::now(), in_flight = true;
    int64_t offset = 0;
    for (size_t v : b.vars) {
      fold(v);
      const Var& p = vars[v];
      int64_t n = p.value().numel();
      Tensor slot = b.buffer.slice_rows(offset, offset + n);
      if (p.has_grad())
        slot.copy_from(p.grad().reshape({n}));
      else
        slot.fill(0.f);  // a parameter this rank's batches did not reach
      offset += n;
    }
#ifdef QKV_WITH_MPI
    MPI_Iallreduce(MPI_IN_PLACE, b.buffer.data<float>(), int(b.buffer.numel()), MPI_FLOAT, MPI_SUM,
                   MPI_COMM_WORLD, &b.request);
#endif
  }

  // Lets MPI move the started buckets along (Open MPI progresses only inside its calls).
  void poll() {
#ifdef QKV_WITH_MPI
    for (size_t i = 0; i < next_to_start; ++i) {
      int done = 0;
      if (buckets[i].request != MPI_REQUEST_NULL)
        MPI_Test(&buckets[i].request, &done, MPI_STATUS_IGNORE);
    }
#endif
  }

  // Waits for every bucket and writes the sums into the gradients.
  void sum_over_ranks() {
    Clock::time_point backward_end = Clock::now();
    while (next_to_start < buckets.size()) start(buckets[next_to_start++]);
#ifdef QKV_WITH_MPI
    for (auto& b : buckets) MPI_Wait(&b.request, MPI_STATUS_IGNORE);
#endif
    exposed_s += seconds_since(backward_end);
    allreduce_s += seconds_since(first_start);
    for (auto& b : buckets) {
      int64_t offset = 0;
      for (size_t v : b.vars) {
        int64_t n = vars[v].value().numel();
        vars[v].grad().reshape({n}).copy_from(b.buffer.slice_rows(offset, offset + n));
        offset += n;
      }
    }
    next_to_start = 0;
    in_flight = false;
  }
};

GradientSum::GradientSum(const nn::ParamList& params, double bucket_mb)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  std::unordered_set<const void*> seen;
  for (const auto& [name, p] : params)
    if (p.requires_grad() && seen.insert(p.id()).second) s.vars.push_back(p);
  s.earlier.resize(s.vars.size());
  if (Ranks::size() == 1) return;
  int64_t cap = std::max<int64_t>(1, int64_t(bucket_mb * 1e6 / sizeof(float)));
  s.bucket_of.resize(s.vars.size());
  std::vector<int64_t> sizes;
  for (size_t v = s.vars.size(); v-- > 0;) {
    int64_t n = s.vars[v].value().numel();
    if (n > int64_t(INT32_MAX)) throw std::invalid_argument("a parameter of over 2^31 elements");
    if (s.buckets.empty() || sizes.back() + n > cap) {
      s.buckets.emplace_back();
      sizes.push_back(0);
    }
    s.buckets.back().vars.push_back(v);
    sizes.back() += n;
    s.bucket_of[v] = s.buckets.size() - 1;
  }
  for (size_t b = 0; b < s.buckets.size(); ++b) s.buckets[b].buffer = Tensor::empty({sizes[b]});
}

GradientSum::~GradientSum() = default;

size_t GradientSum::buckets() const {
  return state_->buckets.size();
}

void GradientSum::begin_pass(Tape& tape, bool first, bool last) {
  State& s = *state_;
  if (!first)
    for (size_t v = 0; v < s.vars.size(); ++v) {
      const Var& p = s.vars[v];
      if (!p.has_grad()) continue;
      if (s.earlier[v].defined())
        ops::axpy(1.f, p.grad(), s.earlier[v]);
      else
        s.earlier[v] = p.grad();
      p.clear_grad();  // the next pass computes its gradient from zero
    }
  if (last && !s.buckets.empty()) {
    for (auto& b : s.buckets) b.pending = b.vars.size();
    tape.watch(
        s.vars, [&s](size_t v) { s.complete(v); }, [&s] { s.poll(); });
  }
}

void GradientSum::finish() {
  State& s = *state_;
  if (s.buckets.empty())
    for (size_t v = 0; v < s.vars.size(); ++v) s.fold(v);
  else
    s.sum_over_ranks();
}

GradientSum::Timing GradientSum::take_timing() {
  Timing t{state_->allreduce_s, state_->exposed_s};
  state_->allreduce_s = state_->exposed_s = 0;
  return t;
}

}  // namespace qkv::train
