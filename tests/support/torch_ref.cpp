#include "support/torch_ref.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "io/safetensors.h"

#ifndef QKV_TEST_PYTHON_DIR
#error "QKV_TEST_PYTHON_DIR must name tests/python"
#endif

namespace qkv::test {

namespace {
// The Python server, started once per test binary.
class PythonServer {
 public:
  PythonServer() {
    const char* env = std::getenv("QKV_PYTHON");
    std::string python = env ? env : "/usr/bin/python3";
    std::string script = QKV_TEST_PYTHON_DIR "/torch_ref.py";
    int to_child[2], from_child[2];
    if (pipe(to_child) || pipe(from_child)) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]);
      close(from_child[0]);
      execl(python.c_str(), python.c_str(), script.c_str(), (char*)nullptr);
      std::perror(("cannot start " + python).c_str());
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    in_ = fdopen(to_child[1], "w");
    out_ = fdopen(from_child[0], "r");
  }
  ~PythonServer() {
    if (in_) std::fclose(in_);
    if (out_) std::fclose(out_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  std::string call(const std::string& line) {
    std::fputs((line + "\n").c_str(), in_);
    std::fflush(in_);
    std::string reply;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, out_)) {
      reply += buf;
      if (!reply.empty() && reply.back() == '\n') break;
    }
    if (reply.empty())
      throw std::runtime_error("the PyTorch reference process died (is python3-torch installed?)");
    reply.pop_back();
    return reply;
  }

 private:
  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
};

PythonServer& server() {
  static PythonServer s;
  return s;
}
}  // namespace

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("qkv-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

TensorMap torch_reference(const std::string& op, const TensorMap& inputs,
                          const nlohmann::json& attrs) {
  signal(SIGPIPE, SIG_IGN);
  std::string in = temp_path(op + ".in.safetensors"), out = temp_path(op + ".out.safetensors");
  NamedTensors named(inputs.begin(), inputs.end());
  save_safetensors(in, named);
  nlohmann::json req = {{"op", op}, {"in", in}, {"out", out}, {"attrs", attrs}};
  std::string reply = server().call(req.dump());
  if (reply != "ok") throw std::runtime_error("PyTorch reference for '" + op + "': " + reply);
  TensorMap result;
  for (auto& [name, t] : load_safetensors(out)) result[name] = t;
  return result;
}

double relative_error(const Tensor& got, const Tensor& want) {
  std::vector<float> g = got.to_vector(), w = want.to_vector();
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    double d = std::fabs(double(g[i]) - double(w[i]));
    if (!(d <= max_diff)) max_diff = std::isnan(d) ? INFINITY : d;
    max_ref = std::max(max_ref, std::fabs(double(w[i])));
  }
  if (max_ref == 0) return max_diff;
  return max_diff / max_ref;
}

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what << ": shape " << shape_str(got.shape())
                                       << " vs reference " << shape_str(want.shape());
  double err = relative_error(got, want);
  EXPECT_LE(err, tol) << what << " " << shape_str(got.shape()) << ": relative error " << err
                      << " over tolerance " << tol;
}

Tensor randn(const Shape& shape, Rng& rng, float stddev) {
  Tensor t = Tensor::empty(shape);
  rng.normal(t, 0.f, stddev);
  return t;
}

Tensor rand_ids(const Shape& shape, int32_t high, Rng& rng) {
  Tensor t = Tensor::empty(shape, DType::i32);
  int32_t* d = t.data<int32_t>();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = int32_t(rng.below(uint64_t(high)));
  return t;
}

}  // namespace qkv::test
