// ViT training end to end: a resumed run equals an unbroken one bit for bit, and one resumed
// with max-time keeps the schedule length the first run fixed; validation measures the weight
// average of ema-decay; the built `qkv` trains on an image folder (train-vit), classifies files
// (classify) and evaluates a labelled folder (eval: accuracy, confusion matrix, SVG pictures);
// bad images give one-line errors.
#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/image_set.h"
#include "eval/image_eval.h"
#include "io/safetensors.h"
#include "model_dir/vit_dir.h"
#include "optim/optimizer.h"
#include "support/torch_ref.h"
#include "support/training_checks.h"
#include "train/vit_trainer.h"

#ifndef QKV_BINARY
#error "QKV_BINARY must name the built qkv executable"
#endif

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  std::string dir = temp_path(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), unsigned(bytes.size()));
  gzclose(f);
}

std::vector<uint8_t> idx_header(uint8_t dims, const std::vector<uint32_t>& sizes) {
  std::vector<uint8_t> h{0, 0, 8, dims};
  for (uint32_t s : sizes)
    h.insert(h.end(), {uint8_t(s >> 24), uint8_t(s >> 16), uint8_t(s >> 8), uint8_t(s)});
  return h;
}

// The first n Fashion-MNIST test images as an idx: spec.
std::string fashion_subset(int64_t n) {
  std::string dir = temp_path("fashion_subset");
  std::string spec = "idx:" + dir + "/images.gz," + dir + "/labels.gz";
  if (fs::exists(dir + "/labels.gz")) return spec;
  fs::create_directories(dir);
  data::ImageSet all = data::open_image_set("fashion-mnist:test", {1, 28, 28});
  std::vector<uint8_t> images = idx_header(3, {uint32_t(n), 28, 28});
  images.insert(images.end(), all.pixels.data<uint8_t>(), all.pixels.data<uint8_t>() + n * 784);
  std::vector<uint8_t> labels = idx_header(1, {uint32_t(n)});
  for (int64_t i = 0; i < n; ++i) labels.push_back(uint8_t(all.labels[size_t(i)]));
  write_gzip(dir + "/images.gz", images);
  write_gzip(dir + "/labels.gz", labels);
  return spec;
}

train::ViTTrainConfig tiny_training(const std::string& dir) {
  train::ViTTrainConfig c;
  c.model_dir = dir;
  c.train_set = fashion_subset(400);
  c.valid_split = 80;
  c.model.patch_size = 7, c.model.d_model = 16, c.model.heads = 2, c.model.d_ff = 32;
  c.model.layers = 1;
  c.batch_size = 32, c.warmup_steps = 5, c.learning_rate = 3e-3;
  c.disp_freq = 5, c.valid_freq = 10, c.save_freq = 10, c.threads = 2;
  return c;
}

TEST(TrainViT, ResumedRunEqualsUnbrokenRun) {
  // A schedule that does not depend on max-updates (cosine decays to it), so both runs share it.
  train::ViTTrainConfig straight = tiny_training(fresh_dir("vit_straight"));
  straight.lr_schedule = "inverse-sqrt";
  straight.max_updates = 24;
  EXPECT_EQ(train::train_vit(straight), 24);

  // Stopped at update 10 (in epoch 1 of 10 batches per epoch), then continued.
  train::ViTTrainConfig broken = tiny_training(fresh_dir("vit_broken"));
  broken.lr_schedule = "inverse-sqrt";
  broken.max_updates = 10;
  EXPECT_EQ(train::train_vit(broken), 10);
  broken.max_updates = 24;
  EXPECT_EQ(train::train_vit(broken), 24);

  auto a = load_safetensors(straight.model_dir + "/model.safetensors");
  auto b = load_safetensors(broken.model_dir + "/model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()), 0)
        << a[i].first << " differs after resuming";
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The newest checkpoint's progress.json.
std::string progress_path(const std::string& model_dir) {
  std::string latest = read_text(model_dir + "/checkpoint/latest");
  latest.pop_back();  // the newline
  return model_dir + "/checkpoint/" + latest + "/progress.json";
}

nlohmann::json read_progress(const std::string& model_dir) {
  return nlohmann::json::parse(read_text(progress_path(model_dir)));
}

// With max-time the cosine schedule's length comes from the clock (the updates expected in that
// time); a resumed run keeps the length the interrupted run recorded instead of measuring its
// own (which would restart the decay), and stops at its end.
TEST(TrainViT, ResumedMaxTimeRunKeepsTheScheduleLength) {
  train::ViTTrainConfig c = tiny_training(fresh_dir("vit_max_time"));
  c.lr_schedule = "cosine", c.warmup_steps = 2, c.max_time = 0.02;  // 1.2 s
  c.disp_freq = 1, c.valid_freq = c.save_freq = 100000;
  const int64_t first = train::train_vit(c);
  ASSERT_GE(first, 2);
  // It stopped on the clock: the length it fixed is what it did.
  EXPECT_EQ(read_progress(c.model_dir).at("schedule_updates"), first);

  // As a run killed 6 updates before the end of its schedule leaves its checkpoint.
  const int64_t length = first + 6;
  nlohmann::json progress = read_progress(c.model_dir);
  progress["schedule_updates"] = length;
  std::ofstream(progress_path(c.model_dir)) << progress.dump(2) << "\n";

  c.max_time = 0.2;  // 12 s: far more than 6 updates; a length measured on this run's clock
                     // would be far longer
  EXPECT_EQ(train::train_vit(c), length);
  EXPECT_EQ(read_progress(c.model_dir).at("schedule_updates"), length);
  std::istringstream metrics(read_text(c.model_dir + "/metrics.jsonl"));
  int64_t resumed_updates = 0;
  for (std::string line; std::getline(metrics, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.at("event") != "update" || j.at("update").get<int64_t>() <= first) continue;
    int64_t u = j.at("update");
    EXPECT_FLOAT_EQ(j.at("lr").get<float>(),
                    optim::learning_rate(optim::Schedule::cosine, float(c.learning_rate), u,
                                         c.warmup_steps, length))
        << "update " << u;
    ++resumed_updates;
  }
  EXPECT_EQ(resumed_updates, 6);

  // Run again: the schedule is complete, so nothing more is trained.
  EXPECT_EQ(train::train_vit(c), length);
  EXPECT_NE(
      read_text(c.model_dir + "/metrics.jsonl")
          .find("cosine schedule of " + std::to_string(length) + " updates that max-time fixed"),
      std::string::npos);
}

TEST(TrainViT, ResumingWithOtherClassesIsAnError) {
  train::ViTTrainConfig c = tiny_training(fresh_dir("vit_classes"));
  c.max_updates = 2;
  train::train_vit(c);
  std::string yaml = c.model_dir + "/config.yaml", text;
  {
    std::ifstream in(yaml);
    std::stringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  size_t begin = text.find("classes: "), end = text.find('\n', begin);
  text.replace(begin, end - begin, "classes: [a, b, c, d, e, f, g, h, i, j]");
  std::ofstream(yaml) << text;
  try {
    train::train_vit(c);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("the model's classes differ"), std::string::npos)
        << e.what();
  }
}

// With ema-decay, validation measures the moving average that model.safetensors publishes, not
// the trained weights (the checkpoint's), whose loss differs.
TEST(TrainViT, ValidationMeasuresTheWeightAverage) {
  train::ViTTrainConfig c = tiny_training(fresh_dir("vit_average"));
  c.valid_set = fashion_subset(400);
  c.ema_decay = 0.9, c.max_updates = 20, c.valid_freq = 20;
  train::train_vit(c);
  double logged = last_valid_loss(c.model_dir);
  data::ImageSet valid = data::open_image_set(c.valid_set, {1, 28, 28});
  auto loss_of = [&](const std::string& dir) {
    return eval::predict_images(*model_dir::load_vit_dir(dir, "last"), valid).loss;
  };
  EXPECT_NEAR(loss_of(c.model_dir), logged, 1e-6 * logged);

  std::string trained = fresh_dir("vit_average_trained");
  fs::copy_file(c.model_dir + "/config.yaml", trained + "/config.yaml");
  fs::copy_file(c.model_dir + "/checkpoint/state-20/model.safetensors",
                trained + "/model.safetensors");
  EXPECT_GT(std::abs(loss_of(trained) - logged), 1e-3 * logged);
}

struct QkvRun {
  int exit_code;
  std::string out, err;
};

QkvRun run_qkv(const std::string& args) {
  std::string out = temp_path("qkv.stdout"), err = temp_path("qkv.stderr");
  int status =
      std::system((std::string(QKV_BINARY) + " " + args + " >" + out + " 2>" + err).c_str());
  auto read = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(out), read(err)};
}

// ROOT/dark and ROOT/light: n RGB 20x20 PNGs each, dark ones in [0, 60), light in [190, 250).
void write_dark_light_folder(const std::string& root, int n, int seed) {
  for (const char* cls : {"dark", "light"}) {
    fs::create_directories(root + "/" + cls);
    for (int i = 0; i < n; ++i) {
      std::vector<uint8_t> px(20 * 20 * 3);
      for (size_t p = 0; p < px.size(); ++p)
        px[p] = uint8_t((std::strcmp(cls, "dark") == 0 ? 0 : 190) +
                        (p * 37 + size_t(i * 11 + seed)) % 60);
      std::string path = root + "/" + cls + "/" + std::to_string(i) + ".png";
      ASSERT_TRUE(stbi_write_png(path.c_str(), 20, 20, 3, px.data(), 60));
    }
  }
}

TEST(TrainViT, CommandLineTrainsClassifiesAndEvaluatesAnImageFolder) {
  std::string root = fresh_dir("vit_cli");
  write_dark_light_folder(root + "/train", 24, 0);
  write_dark_light_folder(root + "/test", 6, 5);
  std::string model = root + "/model";
  QkvRun train = run_qkv(
      "train-vit --model-dir " + model + " --train-set " + root + "/train --valid-split 8" +
      " --channels 3 --image-size 16 --patch-size 4 --d-model 16 --heads 2 --d-ff 32 --layers 1" +
      " --batch-size 8 --max-updates 30 --warmup-steps 3 --learning-rate 0.003 --valid-freq 10" +
      " --disp-freq 10 --threads 2");
  ASSERT_EQ(train.exit_code, 0) << train.err;
  EXPECT_NE(train.err.find("Img. "), std::string::npos) << train.err;
  EXPECT_NE(train.err.find("images/s"), std::string::npos) << train.err;

  QkvRun classify = run_qkv("classify --model-dir " + model + " -k 2 " + root +
                            "/test/dark/0.png " + root + "/test/light/3.png");
  ASSERT_EQ(classify.exit_code, 0) << classify.err;
  std::istringstream lines(classify.out);
  std::vector<std::string> l;
  for (std::string s; std::getline(lines, s);) l.push_back(s);
  ASSERT_EQ(l.size(), 6u) << classify.out;
  EXPECT_EQ(l[0], root + "/test/dark/0.png");
  EXPECT_NE(l[1].find("%  dark"), std::string::npos) << classify.out;
  EXPECT_NE(l[4].find("%  light"), std::string::npos) << classify.out;

  QkvRun eval = run_qkv("eval --model-dir " + model + " --test " + root + "/test --report-dir " +
                        root + "/report");
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  EXPECT_NE(eval.out.find("accuracy 100.00% (12 of 12 images)"), std::string::npos) << eval.out;
  for (const char* svg : {"/report/confusion.svg", "/report/training_curves.svg"}) {
    std::ifstream f(root + svg);
    std::string first;
    std::getline(f, first);
    EXPECT_TRUE(first.starts_with("<svg ")) << svg;
  }

  std::ofstream(root + "/not_an_image.png") << "text";
  QkvRun bad = run_qkv("classify --model-dir " + model + " " + root + "/not_an_image.png");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.err.find("qkv: " + root + "/not_an_image.png: not a readable image"), 0u)
      << bad.err;
  EXPECT_EQ(bad.out, "");
}

}  // namespace
}  // namespace qkv::test
