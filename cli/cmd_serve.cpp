// qkv serve: the models of one or more directories over HTTP (src/serve/), until SIGTERM or
// SIGINT, which stop it accepting, let it answer what it took, and end it with status 0.
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "commands.h"
#include "config/options.h"
#include "config_command.h"
#include "serve/server.h"

namespace qkv::cli {

namespace {

struct ServeConfig {
  std::vector<std::string> model_dirs, names;
  std::string checkpoint = "best", device = "cpu", compute_type, host = "127.0.0.1";
  int64_t port = 8080, threads = 0, http_threads = 128;
  int64_t max_batch_tokens = 4096, max_wait_ms = 5, max_queue = 256, timeout_ms = 60000;
  int64_t max_body_bytes = 16 << 20, max_items = 64, max_text_bytes = 10000;
  int64_t max_new_tokens = 1024;

  void bind(Options& o) {
    o.add("model-dir", model_dirs, "a model directory to serve (repeatable; any family)");
    o.add("name", names, "the models' names, in order (default: the directory's name)");
    o.add("checkpoint", checkpoint, "best or last");
    o.add("device", device, "cpu or cuda");
    o.add("compute-type", compute_type,
          "the linear layers' products: f32, bf16 or int8 (cpu only; default: int8 for a "
          "directory written by qkv quantize, else f32)");
    o.add("host", host, "address to listen on (0.0.0.0: every interface)");
    o.add("port", port, "port to listen on (0: any free port, printed)");
    o.add("threads", threads, "CPU threads per batch (0: all cores)");
    o.add("http-threads", http_threads, "connections served at once");
    o.add("max-batch-tokens", max_batch_tokens,
          "tokens of work per batch of requests (source subwords; prompt plus new tokens)");
    o.add("max-wait-ms", max_wait_ms, "how long a request waits for others to batch with");
    o.add("max-queue", max_queue, "requests waiting per model; more are answered 429");
    o.add("timeout-ms", timeout_ms, "a request not answered by then gets 504");
    o.add("max-body-bytes", max_body_bytes, "largest request body (413 above)");
    o.add("max-items", max_items, "sentences, prompts x n or images per request");
    o.add("max-text-bytes", max_text_bytes, "longest sentence or prompt, in bytes");
    o.add("max-new-tokens", max_new_tokens, "largest max_tokens of a completion");
  }

  void check() const {
    auto need = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument(what);
    };
    need(!model_dirs.empty(), "give at least one --model-dir");
    need(names.empty() || names.size() == model_dirs.size(),
         std::to_string(names.size()) + " --name for " + std::to_string(model_dirs.size()) +
             " --model-dir: give one name per model or none");
    need(port >= 0 && port <= 65535, "port must be in [0, 65535], not " + std::to_string(port));
    for (auto [key, value] : {std::pair<const char*, int64_t>{"http-threads", http_threads},
                              {"max-batch-tokens", max_batch_tokens},
                              {"max-queue", max_queue},
                              {"timeout-ms", timeout_ms},
                              {"max-body-bytes", max_body_bytes},
                              {"max-items", max_items},
                              {"max-text-bytes", max_text_bytes},
                              {"max-new-tokens", max_new_tokens}})
      need(value > 0, std::string(key) + " must be positive, not " + std::to_string(value));
    need(max_wait_ms >= 0, "max-wait-ms must not be negative");
    need(threads >= 0, "threads must not be negative");
    if (!compute_type.empty()) ops::compute_type_from_name(compute_type);  // names a bad one
  }
};

std::string default_name(const std::string& dir) {
  std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

void serve(const ServeConfig& c) {
  c.check();
  // SIGTERM and SIGINT are taken by one thread (every other thread, httplib's and OpenMP's
  // included, is made with them blocked), which stops the server.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  model_dir::check_which(c.checkpoint);
  Device device = usable_device(c.device);
  serve::BatchingOptions batching;
  batching.max_batch_tokens = c.max_batch_tokens;
  batching.max_wait = std::chrono::milliseconds(c.max_wait_ms);
  batching.max_queue = size_t(c.max_queue);
  std::vector<std::unique_ptr<serve::ServedModel>> models;
  for (size_t i = 0; i < c.model_dirs.size(); ++i) {
    std::string name = c.names.empty() ? default_name(c.model_dirs[i]) : c.names[i];
    for (const auto& m : models)
      if (m->name() == name)
        throw std::invalid_argument("two models are named '" + name + "': name them with --name");
    models.push_back(std::make_unique<serve::ServedModel>(name, c.model_dirs[i], c.checkpoint,
                                                          device, batching, c.compute_type));
    std::fprintf(stderr, "qkv serve: %s (%s, %s) from %s\n", name.c_str(),
                 model_dir::family_name(models.back()->family()),
                 ops::compute_type_name(models.back()->compute_type()), c.model_dirs[i].c_str());
  }
  serve::ServerOptions options;
  options.host = c.host, options.port = int(c.port), options.threads = int(c.threads);
  options.http_threads = int(c.http_threads), options.max_body_bytes = c.max_body_bytes;
  options.limits.max_items = c.max_items, options.limits.max_text_bytes = c.max_text_bytes;
  options.limits.max_new_tokens = c.max_new_tokens;
  options.limits.timeout = std::chrono::milliseconds(c.timeout_ms);

  serve::Server server(serve::ModelSet(std::move(models)), options);
  int port = server.bind();
  std::fprintf(stderr, "qkv serve: listening on http://%s:%d/\n", c.host.c_str(), port);
  std::atomic<bool> signalled{false};
  std::thread stopper([&] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    signalled = true;
    std::fprintf(stderr, "qkv serve: %s: answering what was asked, then stopping\n",
                 signal == SIGTERM ? "SIGTERM" : "SIGINT");
    server.stop();
  });
  server.run();
  if (!signalled) pthread_kill(stopper.native_handle(), SIGTERM);  // run() ended on its own
  stopper.join();
  std::fprintf(stderr, "qkv serve: stopped\n");
}

}  // namespace

Command add_serve(CLI::App& app) {
  return add_config_command<ServeConfig>(
      app, "serve",
      "Serve models over HTTP: translation (/v1/translate and LibreTranslate's /translate),\n"
      "completions (/v1/completions, OpenAI's shape, with streaming) and image classification\n"
      "(/v1/classify), with dynamic batching of concurrent requests, /v1/models, /health,\n"
      "/metrics (Prometheus) and a web page at /. SIGTERM or Ctrl-C stops it after answering\n"
      "what it took.",
      serve);
}

}  // namespace qkv::cli
