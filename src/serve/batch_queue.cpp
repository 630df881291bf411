#include "serve/batch_queue.h"

#include <algorithm>

#include "serve/http_error.h"

namespace qkv::serve {

void Job::finish() {
  std::lock_guard lock(mutex_);
  done_ = true;
  done_cv_.notify_all();
}

void Job::fail(int status, const std::string& message) {
  std::lock_guard lock(mutex_);
  error_status_ = status, error_ = message, done_ = true;
  done_cv_.notify_all();
}

bool Job::wait_until(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  if (done_cv_.wait_until(lock, deadline, [&] { return done_; })) return true;
  abandoned_ = true;
  return false;
}

bool Job::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

bool Job::abandoned() const {
  std::lock_guard lock(mutex_);
  return abandoned_;
}

void Job::abandon() {
  std::lock_guard lock(mutex_);
  abandoned_ = true;
}

void BatchQueue::push(std::shared_ptr<Job> job) {
  std::lock_guard lock(mutex_);
  if (closed_) throw HttpError(503, "", "the server is shutting down");
  if (jobs_.size() >= options_.max_queue)
    throw HttpError(429, "",
                    "too many requests are waiting for this model (" +
                        std::to_string(options_.max_queue) + "); try again later");
  jobs_.push_back(std::move(job));
  changed_.notify_all();
}

int64_t BatchQueue::waiting_cost(const std::string& group) const {
  int64_t cost = 0;
  for (const auto& job : jobs_)
    if (job->group == group) cost += job->cost;
  return cost;
}

std::vector<std::shared_ptr<Job>> BatchQueue::take() {
  Clock::time_point free_since = Clock::now();
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return !jobs_.empty() || closed_; });
    while (!jobs_.empty() && jobs_.front()->abandoned()) jobs_.pop_front();
    if (jobs_.empty()) {
      if (closed_) return {};
      continue;
    }
    // Only this thread removes jobs, so the oldest stays while it waits.
    std::shared_ptr<Job> oldest = jobs_.front();
    // The wait counts from when the worker was free as well: clients whose answers the last
    // batch just sent tend to ask again at once, and join this batch instead of the next.
    Clock::time_point due = std::max(oldest->arrived, free_since) + options_.max_wait;
    changed_.wait_until(lock, due, [&] {
      return closed_ || waiting_cost(oldest->group) >= options_.max_batch_tokens;
    });
    std::vector<std::shared_ptr<Job>> batch;
    int64_t cost = 0;
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      const auto& job = *it;
      bool fits = batch.empty() || cost + job->cost <= options_.max_batch_tokens;
      if (job->abandoned() || (job->group == oldest->group && fits)) {
        if (!job->abandoned()) cost += job->cost, batch.push_back(job);
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
    if (!batch.empty()) return batch;
  }
}

void BatchQueue::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  changed_.notify_all();
}

size_t BatchQueue::size() const {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

}  // namespace qkv::serve
