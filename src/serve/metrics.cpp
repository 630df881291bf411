#include "serve/metrics.h"

#include <algorithm>
#include <charconv>

namespace qkv::serve {

namespace {

const std::vector<double> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,    2.5,   5,    10,  30};
const std::vector<double> kCountBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
constexpr auto kRateWindow = std::chrono::seconds(60);

// The shortest text that reads back as v ("0.005", not 0.0050000000000000001).
std::string number(double v) {
  char buf[32];
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

// A label value with \, " and newlines escaped as the format asks.
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Metrics::Histogram::add(double value) {
  auto it = std::lower_bound(bounds.begin(), bounds.end(), value);
  if (it != bounds.end()) ++counts[size_t(it - bounds.begin())];
  sum += value, ++count;
}

void Metrics::Histogram::write(std::string& out, const std::string& name,
                               const std::string& labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    out += name + "_bucket{" + labels + ",le=\"" + number(bounds[i]) + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(count) + "\n";
  out += name + "_sum{" + labels + "} " + number(sum) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count) + "\n";
}

void Metrics::count_request(const std::string& endpoint, int status, double seconds) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, status}];
  auto [it, added] = latency_.try_emplace(endpoint, kLatencyBounds);
  it->second.add(seconds);
}

void Metrics::count_batch(const std::string& model, int64_t requests, int64_t items, int64_t tokens,
                          double seconds) {
  std::lock_guard lock(mutex_);
  batch_requests_.try_emplace(model, kCountBounds).first->second.add(double(requests));
  batch_items_.try_emplace(model, kCountBounds).first->second.add(double(items));
  tokens_[model] += uint64_t(tokens);
  recent_[model].push_back({Clock::now(), tokens, seconds});
}

std::string Metrics::prometheus(const std::vector<std::pair<std::string, size_t>>& queues) {
  std::lock_guard lock(mutex_);
  std::string out;
  header(out, "qkv_requests_total", "counter", "Requests answered, by endpoint and status.");
  for (const auto& [key, n] : requests_)
    out += "qkv_requests_total{endpoint=\"" + label(key.first) + "\",code=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  header(out, "qkv_request_duration_seconds", "histogram", "Time from request to response.");
  for (const auto& [endpoint, h] : latency_)
    h.write(out, "qkv_request_duration_seconds", "endpoint=\"" + label(endpoint) + "\"");
  header(out, "qkv_batch_requests", "histogram", "Requests run together in one batch.");
  for (const auto& [model, h] : batch_requests_)
    h.write(out, "qkv_batch_requests", "model=\"" + label(model) + "\"");
  header(out, "qkv_batch_items", "histogram", "Sentences, sequences or images in one batch.");
  for (const auto& [model, h] : batch_items_)
    h.write(out, "qkv_batch_items", "model=\"" + label(model) + "\"");
  header(out, "qkv_tokens_total", "counter", "Tokens produced (translated or generated).");
  for (const auto& [model, n] : tokens_)
    out += "qkv_tokens_total{model=\"" + label(model) + "\"} " + std::to_string(n) + "\n";
  header(out, "qkv_tokens_per_second", "gauge",
         "Tokens per second of computing, over the last minute's batches.");
  for (auto& [model, batches] : recent_) {
    while (!batches.empty() && batches.front().at < Clock::now() - kRateWindow) batches.pop_front();
    double tokens = 0, seconds = 0;
    for (const Batch& b : batches) tokens += double(b.tokens), seconds += b.seconds;
    out += "qkv_tokens_per_second{model=\"" + label(model) + "\"} " +
           number(seconds > 0 ? tokens / seconds : 0) + "\n";
  }
  header(out, "qkv_queue_length", "gauge", "Requests waiting for their model.");
  for (const auto& [model, n] : queues)
    out += "qkv_queue_length{model=\"" + label(model) + "\"} " + std::to_string(n) + "\n";
  return out;
}

}  // namespace qkv::serve
