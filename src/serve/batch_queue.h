// Dynamic batching. Requests to one model wait in its queue until the model's worker takes
// them together with those that arrived meanwhile: a batch is formed when the oldest request has
// waited max_wait or when the work waiting to run with it reaches max_batch_tokens, whichever
// comes first. It holds requests that can run together (the same `group`: the same decoding
// options) in arrival order, up to max_batch_tokens of work, and at least one request however
// large. A request's result is its own (jobs.h): batching changes when it runs, not what it
// gets.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace qkv::serve {

using Clock = std::chrono::steady_clock;

// One request's work. The worker fills in the derived job's results and calls finish(); the
// request's thread waits for it.
struct Job {
  virtual ~Job() = default;
  std::string group;  // jobs batch only with jobs of the same group
  int64_t cost = 1;   // tokens of work, counted against max_batch_tokens
  Clock::time_point arrived = Clock::now();

  // Called once by the worker: done, or failed with an HTTP status and message.
  void finish();
  void fail(int status, const std::string& message);
  // Waits until finished or `deadline`; false on timeout (the job is then abandoned: a worker
  // that has not started it skips it).
  bool wait_until(Clock::time_point deadline);
  bool done() const;
  bool abandoned() const;
  void abandon();
  int error_status() const { return error_status_; }  // 0: none
  const std::string& error() const { return error_; }

 private:
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false, abandoned_ = false;
  int error_status_ = 0;
  std::string error_;
};

struct BatchingOptions {
  int64_t max_batch_tokens = 4096;
  std::chrono::milliseconds max_wait{5};
  size_t max_queue = 256;  // waiting requests; more are refused (429)
};

class BatchQueue {
 public:
  explicit BatchQueue(BatchingOptions options) : options_(options) {}
  // Queues a job: HttpError 429 when max_queue jobs wait, 503 once closed.
  void push(std::shared_ptr<Job> job);
  // The next batch (blocks while there is none); empty once closed and drained.
  std::vector<std::shared_ptr<Job>> take();
  // Refuses new jobs; take() still hands out what waits.
  void close();
  size_t size() const;

 private:
  int64_t waiting_cost(const std::string& group) const;

  BatchingOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::shared_ptr<Job>> jobs_;
  bool closed_ = false;
};

}  // namespace qkv::serve
