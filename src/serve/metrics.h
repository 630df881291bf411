// The server's counters, answered at GET /metrics in Prometheus's text format (0.0.4):
//   qkv_requests_total{endpoint,code}            requests answered, by status
//   qkv_request_duration_seconds{endpoint}       latency histogram
//   qkv_batch_requests{model}, qkv_batch_items{model}
//                                                histograms of requests and of sentences,
//                                                sequences or images per batch
//   qkv_tokens_total{model}                      tokens produced (translated or generated)
//   qkv_tokens_per_second{model}                 of the last minute's batches, while computing
//   qkv_queue_length{model}                      requests waiting
#pragma once
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "serve/batch_queue.h"

namespace qkv::serve {

class Metrics {
 public:
  void count_request(const std::string& endpoint, int status, double seconds);
  void count_batch(const std::string& model, int64_t requests, int64_t items, int64_t tokens,
                   double seconds);
  // The text for GET /metrics; the queue lengths come from the models.
  std::string prometheus(const std::vector<std::pair<std::string, size_t>>& queue_lengths);

 private:
  struct Histogram {
    explicit Histogram(const std::vector<double>& bounds)
        : bounds(bounds), counts(bounds.size(), 0) {}
    std::vector<double> bounds;    // upper bounds, ascending (+Inf implied)
    std::vector<uint64_t> counts;  // per bound, not cumulative
    double sum = 0;
    uint64_t count = 0;
    void add(double value);
    void write(std::string& out, const std::string& name, const std::string& labels) const;
  };
  struct Batch {
    Clock::time_point at;
    int64_t tokens;
    double seconds;
  };

  std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_, batch_requests_, batch_items_;
  std::map<std::string, uint64_t> tokens_;
  std::map<std::string, std::deque<Batch>> recent_;
};

}  // namespace qkv::serve
