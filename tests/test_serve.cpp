// qkv serve in process: the batching queue (batches by group, cost and wait; a full queue 429,
// a closed one 503 and drained), the JSON field checks, and a server on a free port with one
// model of each family: every endpoint's answer equals what the library gives the same input
// alone (also under concurrent requests that batch), streaming adds up to the whole text, and
// each bad request gets its 4xx naming the field while the server lives on.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stb_image_write.h>

#include <fstream>
#include <thread>

#include "data/image_folder.h"
#include "serve/server.h"
#include "support/data_files.h"
#include "support/random_model_dirs.h"

namespace qkv::test {
namespace {

using serve::Json;

std::shared_ptr<serve::Job> job(const std::string& group, int64_t cost) {
  auto j = std::make_shared<serve::Job>();
  j->group = group, j->cost = cost;
  return j;
}

TEST(BatchQueue, BatchesTheSameGroupUpToTheTokenBudget) {
  serve::BatchQueue q({/*max_batch_tokens=*/10, std::chrono::milliseconds(0), 16});
  auto a1 = job("a", 4), b = job("b", 1), a2 = job("a", 4), a3 = job("a", 4), big = job("a", 50);
  for (const auto& j : {a1, b, a2, a3, big}) q.push(j);
  EXPECT_EQ(q.take(), (std::vector<std::shared_ptr<serve::Job>>{a1, a2}));  // 8; 12 > 10
  EXPECT_EQ(q.take(), (std::vector<std::shared_ptr<serve::Job>>{b}));       // now the oldest
  EXPECT_EQ(q.take(), (std::vector<std::shared_ptr<serve::Job>>{a3}));      // big does not fit
  EXPECT_EQ(q.take(), (std::vector<std::shared_ptr<serve::Job>>{big}));     // alone, however big
  EXPECT_EQ(q.size(), 0u);
}

TEST(BatchQueue, FullQueueRefusesClosedQueueDrainsAbandonedJobsAreSkipped) {
  serve::BatchQueue q({100, std::chrono::milliseconds(0), 2});
  auto first = job("a", 1), second = job("a", 1);
  q.push(first), q.push(second);
  try {
    q.push(job("a", 1));
    FAIL() << "a third job fit a queue of 2";
  } catch (const serve::HttpError& e) {
    EXPECT_EQ(e.status, 429);
  }
  first->abandon();
  q.close();
  try {
    q.push(job("a", 1));
    FAIL() << "a closed queue took a job";
  } catch (const serve::HttpError& e) {
    EXPECT_EQ(e.status, 503);
  }
  EXPECT_EQ(q.take(), (std::vector<std::shared_ptr<serve::Job>>{second}));
  EXPECT_TRUE(q.take().empty());  // closed and drained: the worker ends
}

TEST(BatchQueue, AJobWaitsForOthersUntilMaxWait) {
  serve::BatchQueue q({100, std::chrono::milliseconds(60000), 16});
  auto first = job("a", 1);
  q.push(first);
  std::vector<std::shared_ptr<serve::Job>> taken;
  std::thread worker([&] { taken = q.take(); });
  auto second = job("a", 99);  // reaches the budget: the batch goes at once, not after a minute
  q.push(second);
  worker.join();
  EXPECT_EQ(taken, (std::vector<std::shared_ptr<serve::Job>>{first, second}));
}

TEST(JsonFields, ErrorsNameTheField) {
  auto status_field = [](const std::string& body, const std::vector<std::string>& known) {
    try {
      Json j = serve::parse_json_object(body);
      serve::check_fields(j, known);
      serve::strings_field(j, "text");
      serve::integer_field(j, "beam", 1, 1, 8);
      return std::string("ok");
    } catch (const serve::HttpError& e) {
      return std::to_string(e.status) + " " + e.field;
    }
  };
  std::vector<std::string> known = {"text", "beam"};
  EXPECT_EQ(status_field(R"({"text": ["a", "b"], "beam": 2.0})", known), "ok");
  EXPECT_EQ(status_field("{\"text\": [\"a\", \"b\xff\"]}", known), "400 text[1]");
  EXPECT_EQ(status_field("{\"text\": \"\xc3\x28\"}", known), "400 text");
  EXPECT_EQ(status_field(R"({"text": "a", "beam": 2.5})", known), "400 beam");
  EXPECT_EQ(status_field(R"({"text": "a", "beam": 9})", known), "400 beam");
  EXPECT_EQ(status_field(R"({"text": "a", "beam": "2"})", known), "400 beam");
  EXPECT_EQ(status_field(R"({"txt": "a"})", known), "400 txt");
  EXPECT_EQ(status_field(R"({"beam": 1})", known), "400 text");
  EXPECT_EQ(status_field(R"({"text": "a",)", known), "400 ");
  EXPECT_EQ(status_field(R"("text")", known), "400 ");
}

// A 10x6 RGB PNG with varied pixels.
std::string png_bytes(const std::string& path) {
  std::vector<uint8_t> rgb;
  for (int i = 0; i < 10 * 6 * 3; ++i) rgb.push_back(uint8_t(i * 37 % 251));
  EXPECT_TRUE(stbi_write_png(path.c_str(), 10, 6, 3, rgb.data(), 30));
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string base64(const std::string& bytes) {
  static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k) v = v << 8 | (k < n ? uint8_t(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out += k <= n ? digits[v >> (18 - 6 * k) & 63] : '=';
  }
  return out;
}

// A server on a free port with the three random models, and the same models loaded here.
class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = new ScratchDir("serve");
    write_random_translation_dir(dir->file("translation"), 1);
    write_random_gpt_dir(dir->file("gpt"), 3);
    write_random_vit_dir(dir->file("vit"), 4);
  }
  static void TearDownTestSuite() { delete dir; }

  void start(serve::ServerOptions options = {}) {
    options.port = 0;
    options.threads = 1;
    serve::BatchingOptions batching;
    batching.max_wait = std::chrono::milliseconds(20);
    std::vector<std::unique_ptr<serve::ServedModel>> models;
    for (const char* name : {"translation", "gpt", "vit"})
      models.push_back(std::make_unique<serve::ServedModel>(name, dir->file(name), "best",
                                                            Device::cpu, batching));
    server = std::make_unique<serve::Server>(serve::ModelSet(std::move(models)), options);
    port = server->bind();
    running = std::thread([this] { server->run(); });
  }
  void TearDown() override {
    if (!server) return;
    server->stop();
    running.join();
  }

  // POST `body` (JSON unless `type` says otherwise) -> (status, parsed body).
  std::pair<int, Json> post(const std::string& path, const std::string& body,
                            const std::string& type = "application/json") {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(std::chrono::seconds(120));
    auto res = client.Post(path.c_str(), body, type.c_str());
    if (!res) return {-1, Json()};
    return {res->status, Json::parse(res->body, nullptr, false)};
  }
  std::pair<int, Json> post(const std::string& path, const Json& body) {
    return post(path, body.dump());
  }

  static inline ScratchDir* dir = nullptr;
  std::unique_ptr<serve::Server> server;
  std::thread running;
  int port = 0;
};

std::vector<std::string> sentences() {
  std::vector<std::string> s;
  for (size_t i = 0; i < 12; ++i) s.push_back(bible_dev().src[i * 7]);
  return s;
}

TEST_F(ServeTest, TranslationsEqualTheTranslatorAloneAlsoWhenConcurrentRequestsBatch) {
  start();
  auto m = model_dir::load_translation_dir(dir->file("translation"));
  decode::TranslatorOptions o;
  o.search.beam = 3, o.search.n_best = 2;
  decode::Translator translator(*m.model, *m.tokenizer, o);
  std::vector<std::string> text = sentences();
  std::vector<std::vector<decode::Translation>> alone;
  for (const auto& s : text) alone.push_back(translator.translate({s})[0]);

  std::vector<std::pair<int, Json>> answers(text.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < text.size(); ++i)
    clients.emplace_back([&, i] {
      answers[i] = post("/v1/translate", Json{{"text", text[i]}, {"beam", 3}, {"n_best", 2}});
    });
  for (auto& c : clients) c.join();
  for (size_t i = 0; i < text.size(); ++i) {
    ASSERT_EQ(answers[i].first, 200) << answers[i].second.dump();
    const Json& a = answers[i].second;
    EXPECT_EQ(a["model"], "translation");
    ASSERT_EQ(a["translations"].size(), 1u);
    EXPECT_EQ(a["translations"][0], alone[i][0].text) << i;
    EXPECT_NEAR(a["scores"][0].get<double>(), alone[i][0].score, 1e-4);
    ASSERT_EQ(a["n_best"][0].size(), 2u);
    EXPECT_EQ(a["n_best"][0][1]["text"], alone[i][1].text) << i;
  }
  // A list in one request; LibreTranslate's shape (greedy, as its clients expect).
  auto [status, list] = post("/v1/translate", Json{{"text", {text[0], "", text[1]}}});
  ASSERT_EQ(status, 200);
  auto greedy = decode::Translator(*m.model, *m.tokenizer, {}).translate({text[0], "", text[1]});
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(list["translations"][i], greedy[i][0].text);
  auto [libre_status, libre] =
      post("/translate", Json{{"q", text[1]}, {"source", "es"}, {"target", "en"}});
  ASSERT_EQ(libre_status, 200);
  EXPECT_EQ(libre["translatedText"], greedy[2][0].text);
}

TEST_F(ServeTest, CompletionsEqualTheGeneratorAndStreamingAddsUp) {
  start();
  auto m = model_dir::load_language_model_dir(dir->file("gpt"));
  decode::GenerationOptions o;
  o.max_new_tokens = 12, o.num_samples = 2, o.sampling.temperature = 0.9f, o.sampling.seed = 7;
  auto expected = decode::Generator(*m.model, *m.tokenizer, o).generate({"In the", "And God"});
  Json request = {{"prompt", {"In the", "And God"}},
                  {"max_tokens", 12},
                  {"n", 2},
                  {"temperature", 0.9},
                  {"seed", 7}};
  auto [status, answer] = post("/v1/completions", request);
  ASSERT_EQ(status, 200) << answer.dump();
  ASSERT_EQ(answer["choices"].size(), 4u);
  int64_t new_tokens = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(answer["choices"][i]["index"], i);
    EXPECT_EQ(answer["choices"][i]["text"], expected[i].text) << i;
    new_tokens += expected[i].new_tokens;
  }
  EXPECT_EQ(answer["usage"]["completion_tokens"], new_tokens);
  EXPECT_EQ(answer["object"], "text_completion");

  // The same as server-sent events: the pieces of each choice add up to its text.
  request["stream"] = true;
  httplib::Client client("127.0.0.1", port);
  std::string events;
  auto res = client.Post("/v1/completions", request.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  std::vector<std::string> texts(4);
  std::vector<std::string> reasons(4);
  size_t at = 0;
  bool done = false;
  for (size_t end; (end = res->body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    std::string event = res->body.substr(at, end - at);
    ASSERT_EQ(event.rfind("data: ", 0), 0u) << event;
    if (event == "data: [DONE]") {
      done = true;
      continue;
    }
    Json chunk = Json::parse(event.substr(6));
    const Json& c = chunk["choices"][0];
    texts[c["index"].get<size_t>()] += c["text"].get<std::string>();
    if (!c["finish_reason"].is_null()) reasons[c["index"].get<size_t>()] = c["finish_reason"];
  }
  EXPECT_TRUE(done);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(texts[i], expected[i].text) << i;
    EXPECT_EQ(reasons[i], expected[i].finish_reason == "length" ? "length" : "stop");
  }
}

TEST_F(ServeTest, ClassificationOfAFileOrBase64EqualsClassifyImages) {
  start();
  ScratchDir scratch("serve_png");
  std::string png = png_bytes(scratch.file("a.png"));
  auto vit = model_dir::load_vit_dir(dir->file("vit"));
  const nn::ViTConfig& c = vit->config();
  Tensor image = data::decode_image(png, {c.channels, c.image_size, c.image_size}, "a.png");
  auto expected = eval::classify_images(*vit, {image}, 2);
  auto check = [&](const Json& answer, size_t image_index) {
    const Json& p = answer["predictions"][image_index];
    ASSERT_EQ(p.size(), 2u) << answer.dump();
    for (size_t k = 0; k < 2; ++k) {
      EXPECT_EQ(p[k]["label"], expected[0][k].label);
      EXPECT_FLOAT_EQ(p[k]["probability"].get<float>(), expected[0][k].probability);
    }
  };
  auto [file_status, file] = post("/v1/classify?top_k=2", png, "image/png");
  ASSERT_EQ(file_status, 200) << file.dump();
  check(file, 0);
  auto [json_status, json] =
      post("/v1/classify",
           Json{{"images", {base64(png), "data:image/png;base64," + base64(png)}}, {"top_k", 2}});
  ASSERT_EQ(json_status, 200) << json.dump();
  check(json, 0);
  check(json, 1);
}

TEST_F(ServeTest, BadRequestsGetA4xxNamingTheFieldAndTheServerLivesOn) {
  serve::ServerOptions options;
  options.max_body_bytes = 4096;
  options.limits.max_items = 3, options.limits.max_text_bytes = 200;
  start(options);
  struct Case {
    const char* path;
    std::string body;
    int status;
    const char* field;
  };
  std::vector<Case> cases = {
      {"/v1/translate", R"({"text": 5})", 400, "text"},
      {"/v1/translate", R"({"text": ["a", 3]})", 400, "text[1]"},
      {"/v1/translate", "{\"text\": [\"a\", \"\xff\"]}", 400, "text[1]"},
      {"/v1/translate", R"({"text": "a", "beam": 0})", 400, "beam"},
      {"/v1/translate", R"({"text": "a", "beam": 2, "n_best": 3})", 400, "n_best"},
      {"/v1/translate", R"({"text": "a", "bean": 2})", 400, "bean"},
      {"/v1/translate", R"({"text": ["a", "b", "c", "d"]})", 413, "text"},
      {"/v1/translate", R"({"text": [")" + std::string(300, 'a') + "\"]}", 413, "text[0]"},
      {"/v1/translate", R"({"text": []})", 400, "text"},
      {"/v1/translate", R"({"model": "nope", "text": "a"})", 404, "model"},
      {"/v1/translate", R"({"model": "vit", "text": "a"})", 400, "model"},
      {"/v1/translate", R"({"text": "a",)", 400, ""},
      {"/v1/translate", "[]", 400, ""},
      {"/translate", R"({"q": "a", "target": "en"})", 400, "source"},
      {"/translate", R"({"q": "a", "source": "es", "target": "en", "format": "html"})", 400,
       "format"},
      {"/v1/completions", R"({"prompt": "a", "max_tokens": 0})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "a", "temperature": -1})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "a", "top_p": 2})", 400, "top_p"},
      {"/v1/completions", R"({"prompt": "a", "stop": [""]})", 400, "stop"},
      {"/v1/completions", R"({"prompt": "a", "n": 2, "stream": "yes"})", 400, "stream"},
      {"/v1/completions", R"({"prompt": "a", "logprobs": 5})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": ["a", "b"], "n": 2})", 413, "prompt"},
      {"/v1/completions", R"({"prompt": "a", "seed": -1})", 400, "seed"},
      {"/v1/classify", R"({"image": "%%%"})", 400, "image"},
      {"/v1/classify", R"({"images": ["aGVsbG8="]})", 400, "images[0]"},
      {"/v1/classify", R"({"image": "aGVsbG8=", "images": []})", 400, "image"},
      {"/v1/classify", R"({"image": "aGVsbG8=", "top_k": 0})", 400, "top_k"},
      {"/v1/translate", "{\"text\": \"" + std::string(5000, 'a') + "\"}", 413, ""},
  };
  for (const Case& c : cases) {
    auto [status, answer] = post(c.path, c.body);
    EXPECT_EQ(status, c.status) << c.path << " " << c.body.substr(0, 80) << " " << answer.dump();
    ASSERT_TRUE(answer.contains("error")) << c.body.substr(0, 80);
    EXPECT_EQ(answer["error"].value("field", ""), c.field) << c.body.substr(0, 80);
    EXPECT_EQ(answer["error"]["code"], c.status);
    EXPECT_FALSE(answer["error"]["message"].get<std::string>().empty());
  }
  EXPECT_EQ(post("/v1/classify", "x", "text/plain").first, 415);
  httplib::Client client("127.0.0.1", port);
  EXPECT_EQ(client.Get("/v1/translate")->status, 405);
  EXPECT_EQ(client.Get("/translate")->status, 405);  // not taken for a page
  EXPECT_EQ(client.Put("/v1/completions", "{}", "application/json")->status, 405);
  EXPECT_EQ(client.Delete("/v1/models")->status, 405);
  EXPECT_EQ(client.Get("/")->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(client.Get("/nowhere")->status, 404);
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(Json::parse(health->body)["status"], "ok");
  // Every answer above was counted.
  std::string metrics = client.Get("/metrics")->body;
  EXPECT_NE(metrics.find("qkv_requests_total{endpoint=\"/v1/translate\",code=\"413\"} 3"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("# TYPE qkv_request_duration_seconds histogram"), std::string::npos);
}

TEST_F(ServeTest, ARequestPastItsTimeoutGets504AndOthersAreStillAnswered) {
  serve::ServerOptions options;
  options.limits.timeout = std::chrono::milliseconds(1);
  start(options);
  auto [status, answer] =
      post("/v1/completions", Json{{"prompt", {"a", "b", "c"}}, {"max_tokens", 1000}, {"n", 8}});
  EXPECT_EQ(status, 504) << answer.dump();
  httplib::Client client("127.0.0.1", port);
  EXPECT_EQ(client.Get("/health")->status, 200);
}

}  // namespace
}  // namespace qkv::test
