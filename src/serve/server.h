// qkv serve's HTTP server (cpp-httplib): the endpoints of api.h, the web page (web_assets.h)
// and /metrics, over the models of a ModelSet. Every error is answered as JSON
// {"error": {"message", "field", "code"}}; a handler never takes the server down.
#pragma once
#include <memory>
#include <string>

#include "serve/api.h"

namespace qkv::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (bind() says which)
  int threads = 0;         // compute threads per batch (0: all cores)
  int http_threads = 128;  // connections served at once (a waiting request holds one)
  int64_t max_body_bytes = 16 << 20;
  RequestLimits limits;
};

class Server {
 public:
  Server(ModelSet models, ServerOptions options);
  ~Server();
  // Binds host:port; returns the port. std::runtime_error naming the address when it cannot.
  int bind();
  // Answers requests until stop(), then lets every model finish what was queued, and returns.
  void run();
  // Safe from any thread: stops accepting connections; run() returns once all is answered.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qkv::serve
