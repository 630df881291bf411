// qkv distill for translation (train/distill.h): seq distillation's corpus is the teacher's own
// `qkv translate` output line for line; an interrupted teacher pass (even in the middle of a
// line) continues to the same corpus; a matching corpus is reused and another beam's made again;
// (in the teacher's compute type too); a word-distilled student that starts as its teacher has
// nothing to learn (cost 0), so the teacher's rows line up with the student's; a resumed word
// distillation equals an unbroken one; bad input gets errors that name it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "support/bible_subset.h"
#include "support/cli_run.h"
#include "support/random_model_dirs.h"
#include "support/training_checks.h"
#include "train/distill.h"
#include "train/seq_distillation.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

class DistillTranslation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(teacher());
    write_random_translation_dir(teacher(), 7);
    // Sources end with <eos>, as in the models qkv trains (word distillation needs the same).
    nn::Seq2SeqConfig c = model_dir::read_seq2seq_config(model_dir::config_path(teacher()));
    c.source_eos = true;
    model_dir::write_config(model_dir::config_path(teacher()), c);
    std::ofstream out(sources_file());
    for (const auto& line : sources()) out << line << "\n";
  }
  static std::string teacher() { return temp_path("distill_teacher"); }
  static std::vector<std::string> sources() { return data::read_corpus(bible_pairs(40)).src; }
  static std::string sources_file() { return temp_path("distill_sources.es"); }
  // What `qkv translate` makes of the sources with the teacher.
  static std::string teacher_translations(int beam, const std::string& options = "") {
    CliResult r = run_qkv("translate --model-dir " + teacher() + " --beam " + std::to_string(beam) +
                          " --input " + sources_file() + " " + options);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
  }
  static std::string fresh_dir(const std::string& name) {
    std::string dir = temp_path(name);
    fs::remove_all(dir);
    return dir;
  }
  static train::TrainConfig student(const std::string& dir) {
    train::TrainConfig c;
    c.model_dir = dir;
    c.train_sets = {bible_pairs(40)};
    c.model.d_model = 32, c.model.heads = 2, c.model.d_ff = 64;
    c.model.encoder_layers = 1, c.model.decoder_layers = 1, c.model.max_positions = 64;
    c.model.vocab_size = 150, c.batch_tokens = 300, c.max_length = 60;
    c.warmup_steps = 10, c.learning_rate = 1e-3;
    c.disp_freq = 1, c.save_freq = 2, c.valid_freq = 1000, c.threads = 2;
    return c;
  }
  static train::DistillOptions options(const std::string& method) {
    train::DistillOptions o;
    o.teacher = teacher();
    o.method = method;
    return o;
  }
};

TEST_F(DistillTranslation, SeqCorpusIsTheTeachersOwnTranslation) {
  train::TrainConfig s = student(fresh_dir("distill_seq"));
  s.max_updates = 2;
  train::DistillOptions o = options("seq");
  o.teacher_beam = 3;
  EXPECT_EQ(train::distill_seq2seq(s, o), 2);
  EXPECT_EQ(read_text(s.model_dir + "/distill/train.tgt"), teacher_translations(3));
  EXPECT_EQ(lines_of(read_text(s.model_dir + "/distill/train.src")), sources());
  // The student's subwords were learnt from its training data: the teacher's English.
  EXPECT_TRUE(fs::exists(s.model_dir + "/spm.model"));
}

TEST_F(DistillTranslation, AnInterruptedTeacherPassContinuesToTheSameCorpus) {
  model_dir::TranslationModel t = model_dir::load_translation_dir(teacher());
  train::TeacherPass pass;
  pass.teacher = t.model.get(), pass.tokenizer = t.tokenizer.get();
  pass.beam = 3, pass.chunk_sentences = 7;
  std::string dir = fresh_dir("distill_interrupted");
  std::vector<std::string> notes;
  auto note = [&](const std::string& text) { notes.push_back(text); };
  auto killed_after_two_chunks = [](int64_t done, int64_t) {
    if (done == 14) throw std::runtime_error("killed");
  };
  EXPECT_THROW(
      train::make_seq_distillation_corpus(pass, sources(), dir, killed_after_two_chunks, note),
      std::runtime_error);
  EXPECT_FALSE(fs::exists(dir + "/train.tgt"));
  EXPECT_EQ(lines_of(read_text(dir + "/train.tgt.partial")).size(), 14u);
  std::ofstream(dir + "/train.tgt.partial", std::ios::app) << "half a li";  // killed mid-write

  std::string spec = train::make_seq_distillation_corpus(
      pass, sources(), dir, [](int64_t, int64_t) {}, note);
  EXPECT_EQ(spec, dir + "/train.src," + dir + "/train.tgt");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("after sentence 14"), std::string::npos) << notes[0];
  EXPECT_EQ(read_text(dir + "/train.tgt"), teacher_translations(3));
  EXPECT_FALSE(fs::exists(dir + "/train.tgt.partial"));

  int64_t chunks = 0;
  auto count = [&](int64_t, int64_t) { ++chunks; };
  train::make_seq_distillation_corpus(pass, sources(), dir, count, note);
  EXPECT_EQ(chunks, 0);  // reused as it is
  EXPECT_NE(notes.back().find("reusing"), std::string::npos) << notes.back();

  pass.beam = 2;  // another corpus
  train::make_seq_distillation_corpus(pass, sources(), dir, count, note);
  EXPECT_NE(notes.back().find("another teacher, beam or corpus"), std::string::npos);
  EXPECT_EQ(read_text(dir + "/train.tgt"), teacher_translations(2));
}

double first_update_loss(const std::string& model_dir) {
  std::ifstream metrics(model_dir + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["event"] == "update") return j["loss"].get<double>();
  }
  ADD_FAILURE() << "no update in " << model_dir;
  return -1;
}

TEST_F(DistillTranslation, AWordStudentStartingAsItsTeacherHasNothingToLearn) {
  train::TrainConfig s = student(fresh_dir("distill_word_same"));
  s.init_from = teacher();
  s.dropout = 0, s.max_updates = 1;
  train::DistillOptions o = options("word");
  o.weights = {2.f, 1.f};  // the teacher alone
  train::distill_seq2seq(s, o);
  EXPECT_NEAR(first_update_loss(s.model_dir), 0.0, 1e-5);

  train::TrainConfig half = s;  // half the cross-entropy with the references
  half.model_dir = fresh_dir("distill_word_half");
  o.weights.kd_weight = 0.5f;
  train::distill_seq2seq(half, o);
  EXPECT_GT(first_update_loss(half.model_dir), 1.0);
}

TEST_F(DistillTranslation, AResumedWordDistillationEqualsAnUnbrokenOne) {
  train::DistillOptions o = options("word");
  train::TrainConfig straight = student(fresh_dir("distill_straight"));
  straight.max_updates = 4;
  EXPECT_EQ(train::distill_seq2seq(straight, o), 4);
  train::TrainConfig broken = student(fresh_dir("distill_broken"));
  broken.max_updates = 2;
  EXPECT_EQ(train::distill_seq2seq(broken, o), 2);
  broken.max_updates = 4;
  EXPECT_EQ(train::distill_seq2seq(broken, o), 4);
  expect_same_weights(straight.model_dir, broken.model_dir);
}

TEST_F(DistillTranslation, BadInputIsNamed) {
  train::TrainConfig s = student(fresh_dir("distill_bad"));
  train::DistillOptions o = options("word");
  o.teacher = fresh_dir("not_a_model");
  fs::create_directories(o.teacher);
  EXPECT_NE(error_of([&] { train::distill_seq2seq(s, o); }).find(o.teacher), std::string::npos);

  o.teacher = temp_path("distill_gpt_teacher");
  write_random_gpt_dir(o.teacher, 3);
  EXPECT_NE(error_of([&] { train::distill_seq2seq(s, o); }).find("needs a translation teacher"),
            std::string::npos);

  o = options("word");  // a student given subwords of its own
  std::vector<std::string> lines = sources();
  std::vector<std::string_view> text(lines.begin(), lines.end());
  data::TokenizerOptions t;
  t.vocab_size = 120;
  std::string other = fresh_dir("distill_other_spm");
  data::Tokenizer::train(text, t).save(other);
  s.spm_model = other + "/spm.model";
  EXPECT_NE(error_of([&] { train::distill_seq2seq(s, o); }).find("tokenizer"), std::string::npos);
  s.spm_model.clear();

  o.method = "logits";
  EXPECT_NE(error_of([&] { train::distill_seq2seq(s, o); }).find("method: 'logits'"),
            std::string::npos);
  o.method = "word", o.weights.kd_weight = 0;
  EXPECT_NE(error_of([&] { train::distill_seq2seq(s, o); }).find("kd-weight"), std::string::npos);

  CliResult r = run_qkv("distill --model-dir " + s.model_dir);
  EXPECT_NE(r.err.find("--teacher"), std::string::npos) << r.err;
  EXPECT_EQ(r.status, 1);
  r = run_qkv("distill --teacher " + teacher() + " --model-dir " + s.model_dir + " --beam 3");
  EXPECT_NE(r.err.find("--beam"), std::string::npos) << r.err;
  EXPECT_NE(r.status, 0);
  r = run_qkv("distill --teacher " + teacher() + " --model-dir " + teacher() + " --train-sets " +
              bible_pairs(40));
  EXPECT_NE(r.err.find("is the teacher"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(teacher() + "/distill.yaml"));
}

TEST_F(DistillTranslation, TheCommandReadsTheTeacherAndTheStudentFromOneConfigFile) {
  std::string dir = fresh_dir("distill_cli"), yaml = temp_path("distill_student.yaml");
  std::ofstream(yaml) << "teacher: " << teacher() << "\nmethod: seq\nteacher-beam: 2\n"
                      << "teacher-compute-type: int8\n"
                      << "train-sets: [" << bible_pairs(40) << "]\n"
                      << "d-model: 32\nheads: 2\nd-ff: 64\nencoder-layers: 1\n"
                      << "decoder-layers: 1\nvocab-size: 150\nmax-updates: 1\nthreads: 2\n";
  CliResult r = run_qkv("distill --config " + yaml + " --model-dir " + dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_text(dir + "/distill/train.tgt"), teacher_translations(2, "--compute-type int8"));
  EXPECT_NE(read_text(dir + "/distill.yaml").find("teacher: " + teacher()), std::string::npos);
  r = run_qkv("distill --teacher " + teacher() + " --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("--kd-weight"), std::string::npos);
  EXPECT_NE(r.out.find("--train-sets"), std::string::npos);
}

// The recipe's files hold only keys their commands know, with values they accept.
TEST(DistillRecipe, ConfigFilesLoad) {
  train::TrainConfig teacher, student;
  train::DistillOptions distill;
  Options t, s;
  teacher.bind(t);
  student.bind(s);
  distill.bind(s);
  t.load_yaml(QKV_SOURCE_DIR "/configs/distill-teacher.yaml");
  s.load_yaml(QKV_SOURCE_DIR "/configs/distill-student.yaml");
  EXPECT_EQ(teacher.preset, "tiny");
  EXPECT_EQ(student.model.d_model, 128);
  EXPECT_EQ(distill.teacher, "runs/teacher");
  student.model_dir = teacher.model_dir = "runs/x";
  teacher.validate();
  student.validate();
  distill.validate(model_dir::Family::seq2seq);
}

}  // namespace
}  // namespace qkv::test
