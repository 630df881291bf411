// `qkv serve` as a user runs it: over HTTP it answers what `qkv translate`, `qkv generate` and
// `qkv classify` print for the same input and settings; SIGTERM answers the requests it took
// and exits 0; bad flags and a port in use are errors before it listens; a YAML config works.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <stb_image_write.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/cli_run.h"
#include "support/data_files.h"
#include "support/random_model_dirs.h"

namespace qkv::test {
namespace {

using Json = nlohmann::json;

// A `qkv serve` process; its stderr goes to a file, from which the port is read.
class ServeProcess {
 public:
  explicit ServeProcess(const std::string& args)
      : log_(temp_path("serve_" + std::to_string(getpid()) + ".log")) {
    std::remove(log_.c_str());
    pid_ = fork();
    if (pid_ == 0) {
      std::string cmd =
          "exec " + std::string(QKV_BINARY) + " serve --port 0 " + args + " 2> " + log_;
      execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
      _exit(127);
    }
  }
  ~ServeProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // The port once it listens; 0 if it ended first (or after a minute, a hang guard).
  int port() {
    for (int i = 0; i < 6000; ++i) {
      std::string log = read_text(log_);
      size_t at = log.find("listening on http://127.0.0.1:");
      if (at != std::string::npos) return std::stoi(log.substr(at + 30));
      if (waitpid(pid_, &status_, WNOHANG) == pid_) return exited_ = true, 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 0;
  }
  // Sends SIGTERM and waits for the exit code.
  int terminate() {
    kill(pid_, SIGTERM);
    return wait();
  }
  int wait() {
    if (!exited_) waitpid(pid_, &status_, 0), exited_ = true;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }
  std::string log() const { return read_text(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
};

Json post(int port, const std::string& path, const Json& body) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(std::chrono::seconds(120));
  auto res = client.Post(path.c_str(), body.dump(), "application/json");
  if (!res) return Json{{"transport_error", int(res.error())}};
  Json j = Json::parse(res->body);
  j["status"] = res->status;
  return j;
}

struct Models {
  ScratchDir dir{"cli_serve"};
  std::string translation = dir.file("translation"), gpt = dir.file("gpt"), vit = dir.file("vit");
  Models() {
    write_random_translation_dir(translation, 1);
    write_random_gpt_dir(gpt, 3);
    write_random_vit_dir(vit, 4);
  }
  std::string flags() const {
    return "--model-dir " + translation + " --model-dir " + gpt + " --model-dir " + vit;
  }
};

TEST(CliServe, AnswersWhatTheCommandsPrint) {
  Models m;
  ServeProcess server(m.flags() + " --threads 1");
  int port = server.port();
  ASSERT_GT(port, 0) << server.log();

  std::vector<std::string> sentences;
  std::string input;
  for (size_t i = 0; i < 6; ++i) {
    sentences.push_back(bible_dev().src[i * 11]);
    input += sentences.back() + "\n";
  }
  CliResult translate = run_qkv("translate --model-dir " + m.translation + " --beam 4", input);
  ASSERT_EQ(translate.status, 0) << translate.err;
  Json t =
      post(port, "/v1/translate", {{"model", "translation"}, {"text", sentences}, {"beam", 4}});
  ASSERT_EQ(t["status"], 200) << t.dump();
  EXPECT_EQ(lines_of(translate.out), t["translations"].get<std::vector<std::string>>());

  CliResult generate = run_qkv("generate --model-dir " + m.gpt +
                               " --prompt 'In the' --max-new-tokens 20 --temperature 0.8 "
                               "--top-p 0.9 --seed 5 --stop xq");
  ASSERT_EQ(generate.status, 0) << generate.err;
  Json g = post(port, "/v1/completions",
                {{"prompt", "In the"},
                 {"max_tokens", 20},
                 {"temperature", 0.8},
                 {"top_p", 0.9},
                 {"seed", 5},
                 {"stop", "xq"}});
  ASSERT_EQ(g["status"], 200) << g.dump();
  EXPECT_EQ(generate.out, "In the" + g["choices"][0]["text"].get<std::string>() + "\n");

  std::string png = m.dir.file("a.png");
  std::vector<uint8_t> rgb;
  for (int i = 0; i < 12 * 9 * 3; ++i) rgb.push_back(uint8_t(i * 53 % 241));
  ASSERT_TRUE(stbi_write_png(png.c_str(), 12, 9, 3, rgb.data(), 36));
  CliResult classify = run_qkv("classify -k 3 --model-dir " + m.vit + " " + png);
  ASSERT_EQ(classify.status, 0) << classify.err;
  httplib::Client client("127.0.0.1", port);
  auto res = client.Post("/v1/classify?top_k=3", read_text(png), "image/png");
  ASSERT_TRUE(res);
  Json c = Json::parse(res->body);
  std::string printed = png + "\n";
  for (const Json& p : c["predictions"][0]) {
    char line[128];
    std::snprintf(line, sizeof line, "  %6.2f%%  %s\n", 100.0 * p["probability"].get<double>(),
                  p["label"].get<std::string>().c_str());
    printed += line;
  }
  EXPECT_EQ(classify.out, printed);
  EXPECT_EQ(server.terminate(), 0) << server.log();
}

TEST(CliServe, SigtermAnswersWhatItTookAndExitsZero) {
  Models m;
  ServeProcess server("--model-dir " + m.gpt + " --threads 1 --max-wait-ms 0");
  int port = server.port();
  ASSERT_GT(port, 0) << server.log();
  // Requests with different max_tokens do not batch: they queue behind each other.
  std::vector<Json> answers(8);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < answers.size(); ++i)
    clients.emplace_back([&, i] {
      answers[i] = post(port, "/v1/completions",
                        {{"prompt", "And"}, {"max_tokens", 300 + i}, {"seed", i}, {"n", 4}});
    });
  // SIGTERM once every request is in: answered, waiting, or the one running (the metrics
  // show the first two), with some still waiting.
  httplib::Client client("127.0.0.1", port);
  auto metric = [](const std::string& text, const std::string& name) {
    size_t at = text.find(name + " ");
    return at == std::string::npos ? 0 : std::stoi(text.substr(at + name.size() + 1));
  };
  int waiting = 0, answered = 0;
  for (int i = 0; i < 6000; ++i) {
    auto res = client.Get("/metrics");
    if (!res) continue;
    waiting = metric(res->body, "qkv_queue_length{model=\"gpt\"}");
    answered = metric(res->body, "qkv_requests_total{endpoint=\"/v1/completions\",code=\"200\"}");
    if (waiting + answered >= int(answers.size()) - 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  bool queued = waiting > 0;
  EXPECT_EQ(server.terminate(), 0) << server.log();
  for (auto& c : clients) c.join();
  EXPECT_TRUE(queued) << "no request was waiting when SIGTERM came";
  for (const Json& a : answers) {
    EXPECT_EQ(a["status"], 200) << a.dump();
    EXPECT_EQ(a["choices"].size(), 4u);
  }
  EXPECT_NE(server.log().find("SIGTERM: answering what was asked, then stopping"),
            std::string::npos);
}

TEST(CliServe, BadFlagsAndABusyPortAreErrorsAndAConfigFileWorks) {
  Models m;
  CliResult none = run_qkv("serve --port 0");
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.err.find("give at least one --model-dir"), std::string::npos) << none.err;
  CliResult names = run_qkv("serve --port 0 " + m.flags() + " --name a --name b");
  EXPECT_NE(names.err.find("2 --name for 3 --model-dir"), std::string::npos) << names.err;
  CliResult twice = run_qkv("serve --port 0 --model-dir " + m.gpt + " --model-dir " + m.gpt);
  EXPECT_NE(twice.err.find("two models are named 'gpt'"), std::string::npos) << twice.err;
  CliResult missing = run_qkv("serve --port 0 --model-dir " + m.dir.file("nothing"));
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find(m.dir.file("nothing")), std::string::npos) << missing.err;
  CliResult bad_wait = run_qkv("serve --port 0 --model-dir " + m.gpt + " --max-queue 0");
  EXPECT_NE(bad_wait.err.find("max-queue must be positive"), std::string::npos) << bad_wait.err;
  CliResult bad_type = run_qkv("serve --port 0 --model-dir " + m.gpt + " --compute-type int4");
  EXPECT_NE(bad_type.err.find("compute type must be f32, bf16 or int8, got 'int4'"),
            std::string::npos)
      << bad_type.err;

  std::string config =
      write_text(m.dir.file("serve.yaml"), "model-dir: [" + m.translation + ", " + m.vit +
                                               "]\nname: [es-en, images]\ncompute-type: int8\n");
  ServeProcess server("--config " + config);
  int port = server.port();
  ASSERT_GT(port, 0) << server.log();
  httplib::Client client("127.0.0.1", port);
  Json models = Json::parse(client.Get("/v1/models")->body);
  EXPECT_EQ(models["data"][0]["id"], "es-en");
  EXPECT_EQ(models["data"][1]["id"], "images");
  EXPECT_EQ(models["data"][1]["compute_type"], "int8");
  // LibreTranslate picks the model named <source>-<target>.
  EXPECT_EQ(post(port, "/translate", {{"q", "Hola"}, {"source", "es"}, {"target", "en"}})["status"],
            200);
  CliResult busy = run_qkv("serve --model-dir " + m.vit + " --port " + std::to_string(port));
  EXPECT_EQ(busy.status, 1);
  EXPECT_NE(busy.err.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << busy.err;
  EXPECT_EQ(server.terminate(), 0);
}

}  // namespace
}  // namespace qkv::test
