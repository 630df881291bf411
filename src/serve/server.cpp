#include "serve/server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>

#include "serve/web_assets.h"

namespace qkv::serve {

namespace {

constexpr const char* kJson = "application/json";
// The endpoints, by the method they take.
const std::vector<std::string> kPostEndpoints = {"/v1/translate", "/translate", "/v1/completions",
                                                 "/v1/classify"};
const std::vector<std::string> kGetEndpoints = {"/health", "/v1/models", "/metrics"};
constexpr int kListenQueue = 4096;  // connections waiting to be accepted

// {"error": {"message", "field", "code"}}, the body of every error (also as a streamed event).
Json error_body(int status, const std::string& field, const std::string& message) {
  Json error = {{"message", message}, {"code", status}};
  if (!field.empty()) error["field"] = field;
  return {{"error", error}};
}

void send_error(httplib::Response& res, int status, const std::string& field,
                const std::string& message) {
  res.status = status;
  res.set_content(error_body(status, field, message).dump(), kJson);
}

// What the errors httplib answers by itself (before any handler) mean.
const char* reason_for(int status) {
  switch (status) {
    case 400:
      return "the request is not valid HTTP";
    case 404:
      return "no such endpoint (see GET /v1/models and the README)";
    case 413:
      return "the body is larger than the server takes";
    case 414:
      return "the URI is too long";
    case 416:
      return "the range asked for is not satisfiable";
    case 431:
      return "the request's headers are too large";
    default:
      return status >= 500 ? "internal error" : "bad request";
  }
}

// When the request being answered started, per HTTP thread, for the latency histogram.
thread_local Clock::time_point request_start;

}  // namespace

struct Server::Impl {
  ModelSet models;
  ServerOptions options;
  Metrics metrics;
  httplib::Server http;
  std::atomic<bool> stopping{false};
  int listening_socket = -1;

  Impl(ModelSet m, ServerOptions o) : models(std::move(m)), options(std::move(o)) {}

  // A POST endpoint answered with JSON: `answer(request)`, or the error it throws.
  void post(const std::string& path, std::function<Json(const httplib::Request&)> answer) {
    http.Post(path, [this, answer](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { res.set_content(answer(req).dump(), kJson); });
    });
  }

  void guarded(httplib::Response& res, const std::function<void()>& answer) {
    try {
      if (stopping) throw HttpError(503, "", "the server is shutting down");
      answer();
    } catch (const HttpError& e) {
      send_error(res, e.status, e.field, e.what());
    } catch (const std::invalid_argument& e) {
      send_error(res, 400, "", e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, "", e.what());
    }
  }

  void routes();
  void completions(const httplib::Request& req, httplib::Response& res);
  Json classify(const httplib::Request& req);
};

void Server::Impl::routes() {
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(
        Json{{"status", stopping ? "stopping" : "ok"}, {"models", models.all().size()}}.dump(),
        kJson);
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(list_models(models).dump(), kJson);
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::vector<std::pair<std::string, size_t>> queues;
    for (const auto& m : models.all()) queues.emplace_back(m->name(), m->waiting());
    res.set_content(metrics.prometheus(queues), "text/plain; version=0.0.4; charset=utf-8");
  });
  post("/v1/translate", [this](const httplib::Request& req) {
    return translate(parse_json_object(req.body), models, options.limits);
  });
  post("/translate", [this](const httplib::Request& req) {
    // LibreTranslate's clients send JSON or a form.
    bool form =
        req.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded");
    if (!form || req.body.starts_with("{"))
      return libre_translate(parse_json_object(req.body), models, options.limits);
    Json request = Json::object();
    for (const auto& [key, value] : req.params) request[key] = value;
    return libre_translate(request, models, options.limits);
  });
  post("/v1/classify", [this](const httplib::Request& req) { return classify(req); });
  http.Post("/v1/completions",
            [this](const httplib::Request& req, httplib::Response& res) { completions(req, res); });
  // Another method on a known path: 405, with the method it takes.
  auto refuse = [this](const std::string& path, const char* allowed) {
    auto answer = [allowed](const httplib::Request&, httplib::Response& res) {
      res.set_header("Allow", allowed);
      send_error(res, 405, "", std::string("this endpoint takes ") + allowed);
    };
    if (std::string(allowed) != "GET") http.Get(path, answer);
    if (std::string(allowed) != "POST") http.Post(path, answer);
    http.Put(path, answer), http.Patch(path, answer), http.Delete(path, answer);
  };
  for (const std::string& path : kPostEndpoints) refuse(path, "POST");
  for (const std::string& path : kGetEndpoints) refuse(path, "GET");
  // The web page's files, after every endpoint (httplib takes the first pattern that matches).
  http.Get(R"(/[^/]*)", [](const httplib::Request& req, httplib::Response& res) {
    const WebAsset* asset = find_web_asset(req.path);
    if (!asset) return send_error(res, 404, "", "no such page: " + req.path);
    res.set_content(asset->body.data(), asset->body.size(),
                    std::string(asset->content_type).c_str());
  });
}

void Server::Impl::completions(const httplib::Request& req, httplib::Response& res) {
  std::shared_ptr<Completion> c;
  guarded(res, [&] {
    c = std::make_shared<Completion>(
        Completion::start(parse_json_object(req.body), models, options.limits));
    if (!c->stream) {
      wait_for(*c->job, options.limits);
      res.set_content(c->response().dump(), kJson);
    }
  });
  if (!c || !c->stream || res.status >= 400) return;
  auto deadline = c->job->arrived + options.limits.timeout;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [c, deadline](size_t, httplib::DataSink& sink) {
        // Called again until done: each call passes on what was generated meanwhile. Pieces
        // come before the job finishes, so once it has, one more take() has them all.
        auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
        bool finished = c->job->done();
        auto wait = std::chrono::milliseconds(finished ? 0 : 50);
        for (const auto& piece : c->job->stream->take(wait)) {
          if (!write(c->event(piece.sequence, piece.text, nullptr))) {
            c->job->abandon();
            return false;
          }
        }
        if (!finished) {
          if (Clock::now() < deadline && sink.is_writable()) return true;
          c->job->abandon();  // timed out, or the client left: the connection closes
          return false;
        }
        if (c->job->error_status() != 0) {
          Json error = error_body(c->job->error_status(), "", c->job->error());
          write("data: " + error.dump() + "\n\n");
        } else {
          write(c->closing_events());
        }
        sink.done();
        return true;
      });
}

Json Server::Impl::classify(const httplib::Request& req) {
  std::string type = req.get_header_value("Content-Type");
  auto param = [&](const char* key) {
    return req.has_param(key) ? std::optional<std::string>(req.get_param_value(key)) : std::nullopt;
  };
  if (type.starts_with(kJson))
    return classify_json(parse_json_object(req.body), models, options.limits);
  if (type.starts_with("image/") || type.starts_with("application/octet-stream"))
    return classify_file(req.body, param("model"), param("top_k"), models, options.limits);
  throw HttpError(415, "Content-Type",
                  "send JSON (application/json) or an image file (image/*), not '" + type + "'");
}

Server::Server(ModelSet models, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(models), std::move(options))) {
  Impl& s = *impl_;
  int http_threads = std::max(2, s.options.http_threads);
  s.http.new_task_queue = [http_threads] { return new httplib::ThreadPool(size_t(http_threads)); };
  s.http.set_payload_max_length(size_t(s.options.max_body_bytes));
  // Clients that send many requests keep their connection (httplib's default closes it after 5,
  // and 64 clients reconnecting at once overflow a listen queue).
  s.http.set_keep_alive_max_count(100000);
  // httplib's default also sets SO_REUSEPORT, with which a second server would bind a port in use
  // instead of failing. The listening socket is kept to lengthen its queue (in bind()).
  s.http.set_socket_options([this](int socket) {
    int on = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    // Answers go out in several writes (headers, body): without this, Nagle's algorithm holds
    // the last one until the client's delayed acknowledgement of the first.
    setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    impl_->listening_socket = socket;
  });
  s.http.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    request_start = Clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  httplib::Server::HandlerWithResponse json_errors = [](const httplib::Request&,
                                                        httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, res.status, "", reason_for(res.status));
    return httplib::Server::HandlerResponse::Handled;
  };
  s.http.set_error_handler(json_errors);
  s.http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        send_error(res, 500, "", "internal error");
      });
  s.http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    auto is = [&](const std::vector<std::string>& paths) {
      return std::find(paths.begin(), paths.end(), req.path) != paths.end();
    };
    bool named = is(kPostEndpoints) || is(kGetEndpoints);
    std::string endpoint = named ? req.path : find_web_asset(req.path) ? "page" : "other";
    double seconds = std::chrono::duration<double>(Clock::now() - request_start).count();
    impl_->metrics.count_request(endpoint, res.status, seconds);
  });
  s.routes();
}

Server::~Server() {
  stop();
  for (const auto& m : impl_->models.all()) m->stop();
}

int Server::bind() {
  Impl& s = *impl_;
  int port = s.options.port == 0
                 ? s.http.bind_to_any_port(s.options.host)
                 : (s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1);
  if (port < 0)
    throw std::runtime_error("cannot listen on " + s.options.host + ":" +
                             std::to_string(s.options.port) + " (in use, or not an address here)");
  // Debian's cpp-httplib is compiled with a listen queue of 5: when many clients connect at once
  // the kernel resets the connections that overflow it. listen() again sets a longer queue.
  if (s.listening_socket >= 0) ::listen(s.listening_socket, kListenQueue);
  for (const auto& m : s.models.all()) m->start(s.metrics, s.options.threads);
  return port;
}

void Server::run() {
  impl_->http.listen_after_bind();
  // httplib has answered every connection it took; the models finish what is queued.
  for (const auto& m : impl_->models.all()) m->stop();
}

void Server::stop() {
  impl_->stopping = true;
  impl_->http.stop();
}

}  // namespace qkv::serve
