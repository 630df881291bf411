#include "train/train_log.h"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "model_dir/model_dir.h"
#include "train/data_parallel.h"

namespace qkv::train {

namespace {
std::string timestamp() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

std::string metrics_path(const std::string& model_dir) {
  return (std::filesystem::path(model_dir) / model_dir::kMetricsFile).string();
}
}  // namespace

TrainLog::TrainLog(const std::string& model_dir, LogUnits units)
    : units_(std::move(units)), terminal_(isatty(fileno(stderr)) && Ranks::root()) {
  if (!Ranks::root()) return;
  metrics_ = std::fopen(metrics_path(model_dir).c_str(), "a");
  if (!metrics_) throw std::runtime_error(metrics_path(model_dir) + ": cannot open for writing");
}

TrainLog::~TrainLog() {
  if (metrics_) std::fclose(metrics_);
}

void TrainLog::line(const std::string& text) {
  if (bar_shown_) std::fputs("\r\033[K", stderr), bar_shown_ = false;
  std::string rank = Ranks::root() ? "" : " rank " + std::to_string(Ranks::rank());
  std::fprintf(stderr, "[%s%s] %s\n", timestamp().c_str(), rank.c_str(), text.c_str());
  std::fflush(stderr);
}

void TrainLog::json(const std::string& text) {
  if (!metrics_) return;
  std::fputs(text.c_str(), metrics_);
  std::fputc('\n', metrics_);
  std::fflush(metrics_);
}

void TrainLog::update(const UpdateStats& s) {
  std::string suffix;
  if (s.moe)
    suffix = format(" : MoE aux %.4f z %.4f dropped %.2f%%", s.moe->aux_loss, s.moe->z_loss,
                    100 * s.moe->dropped);
  if (s.allreduce)
    suffix +=
        format(" : allreduce %.1f ms/up, %.0f%% hidden", s.allreduce->ms,
               s.allreduce->ms > 0 ? 100 * (1 - s.allreduce->exposed_ms / s.allreduce->ms) : 0.0);
  line(
      format("Ep. %lld : Up. %lld : %s %lld : Cost %.4f : L.r. %.4e : gNorm %.3f : "
             "%.1f %s/s : Time %.1fs%s",
             (long long)s.epoch, (long long)s.update, units_.examples.c_str(),
             (long long)s.examples, s.loss, s.learning_rate, s.grad_norm, s.items_per_s,
             units_.items.c_str(), s.elapsed_s, suffix.c_str()));
  nlohmann::json j{{"event", "update"},        {"epoch", s.epoch},
                   {"update", s.update},       {units_.examples_key, s.examples},
                   {"loss", s.loss},           {"lr", s.learning_rate},
                   {"grad_norm", s.grad_norm}, {units_.items_key, s.items_per_s},
                   {"elapsed_s", s.elapsed_s}};
  if (s.moe) {
    j["moe_aux_loss"] = s.moe->aux_loss, j["moe_z_loss"] = s.moe->z_loss;
    j["moe_dropped"] = s.moe->dropped, j["moe_load"] = s.moe->load;
  }
  if (s.allreduce)
    j["allreduce_ms"] = s.allreduce->ms, j["allreduce_exposed_ms"] = s.allreduce->exposed_ms;
  json(j.dump());
}

void TrainLog::validation(const ValidStats& s) {
  std::string scores;
  nlohmann::json j{
      {"event", "valid"}, {"epoch", s.epoch}, {"update", s.update}, {"valid_loss", s.loss}};
  for (const auto& [name, value] : s.scores) {
    scores += format(" : %s %.2f", name.c_str(), value);
    std::string key = name;
    for (char& c : key) c = char(std::tolower((unsigned char)c));
    j[key] = value;
  }
  j["best"] = s.best;
  line(format(
      "Ep. %lld : Up. %lld : valid cross-entropy %.4f%s%s", (long long)s.epoch, (long long)s.update,
      s.loss, scores.c_str(),
      s.best ? " : new best" : format(" : stalled %lld times", (long long)s.stalled).c_str()));
  json(j.dump());
}

void TrainLog::note(const std::string& event, const std::string& text) {
  line(text);
  json(nlohmann::json{{"event", event}, {"text", text}}.dump());
}

void TrainLog::progress(int64_t done, int64_t total, int64_t update) {
  if (!terminal_ || total <= 0) return;
  int width = 30, filled = int(width * done / total);
  std::fprintf(stderr, "\r\033[K  update %lld [%s%s] %lld/%lld", (long long)update,
               std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
               (long long)done, (long long)total);
  std::fflush(stderr);
  bar_shown_ = true;
}

}  // namespace qkv::train
