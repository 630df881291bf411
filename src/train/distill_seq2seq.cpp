// distill_seq2seq: a translation student from a translation teacher, seq or word.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "data/corpus.h"
#include "model_dir/quantized_weights.h"
#include "model_dir/seq2seq_dir.h"
#include "tensor/threads.h"
#include "train/data_parallel.h"
#include "train/distill.h"
#include "train/seq_distillation.h"
#include "train/trainer.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {

struct Teacher : model_dir::TranslationModel {
  ops::ComputeType compute_type = ops::ComputeType::f32;
};

// The teacher on `device`, its products in its compute type (the packed weights serve every
// forward pass without a tape: the teacher pass and the teacher's logits in word distillation).
Teacher load_teacher(const DistillOptions& options, Device device) {
  options.check_teacher_family(model_dir::Family::seq2seq, "translation");
  Teacher t{model_dir::load_translation_dir(options.teacher, options.teacher_checkpoint)};
  t.model->to(device);
  t.compute_type =
      model_dir::apply_compute_type(options.teacher_compute_type, options.teacher,
                                    options.teacher_checkpoint, device, t.model->linears());
  return t;
}

// seq: the student trains with the ordinary trainer on the teacher's translations (and the
// references with mix-references).
int64_t train_on_teacher_translations(const TrainConfig& student, const DistillOptions& options,
                                      Teacher teacher) {
  std::vector<std::string> sources;
  for (const auto& spec : student.train_sets) {
    data::ParallelCorpus c = data::read_corpus(spec);
    sources.insert(sources.end(), c.src.begin(), c.src.end());
  }
  TeacherPass pass;
  pass.teacher = teacher.model.get();
  pass.tokenizer = teacher.tokenizer.get();
  pass.beam = int(options.teacher_beam);
  pass.batch_tokens = options.teacher_batch_tokens;
  pass.compute_type = teacher.compute_type;
  auto start = std::chrono::steady_clock::now();
  int64_t first = -1;
  auto progress = [&](int64_t done, int64_t total) {
    if (first < 0) first = done - std::min<int64_t>(done, pass.chunk_sentences);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "distill: the teacher translated %lld of %lld sentences (%.1f/s)\n",
                 (long long)done, (long long)total, double(done - first) / std::max(s, 1e-9));
  };
  auto note = [](const std::string& text) { std::fprintf(stderr, "distill: %s\n", text.c_str()); };
  std::string corpus =
      make_seq_distillation_corpus(pass, sources, student.model_dir + "/distill", progress, note);
  teacher = {};  // its memory goes back before the student trains
  TrainConfig cfg = student;
  cfg.train_sets = {corpus};
  if (options.mix_references)
    cfg.train_sets.insert(cfg.train_sets.end(), student.train_sets.begin(),
                          student.train_sets.end());
  return train_seq2seq(cfg);
}

// word: the student must read and write the teacher's subwords. A new student gets the
// teacher's tokenizer; one given another (spm-model, or one saved in its directory) is refused.
void share_teacher_tokenizer(const TrainConfig& student, const DistillOptions& options,
                             const Teacher& teacher) {
  const data::Tokenizer& tok = *teacher.tokenizer;
  if (!tok.joint())
    throw std::runtime_error(options.teacher +
                             ": word distillation needs a teacher with one SentencePiece model "
                             "for both languages (spm.model); this one has a vocabulary-mapped "
                             "tokenizer (a converted Marian model): use --method seq");
  std::string saved = student.model_dir + "/spm.model";
  for (const auto& path : {student.spm_model, saved}) {
    if (path.empty() || !fs::exists(path)) continue;
    if (data::Tokenizer::load(path).serialized() != tok.serialized())
      throw std::runtime_error("the student's tokenizer (" + path +
                               ") differs from the teacher's (" + options.teacher +
                               "): word distillation needs them to be the same; leave out "
                               "spm-model, or use --method seq");
  }
  if (!fs::exists(saved)) tok.save(student.model_dir);
  const nn::Seq2SeqConfig& t = teacher.model->config();
  // The student's config: its own (a resumed run), its init-from's, or a new one.
  std::string config = model_dir::config_path(student.model_dir);
  if (!fs::exists(config) && !student.init_from.empty())
    config = model_dir::config_path(student.init_from);
  nn::Seq2SeqConfig s = fs::exists(config) ? model_dir::read_seq2seq_config(config)
                                           : student.model_config(tok.vocab_size());
  if (s.vocab_size != t.vocab_size || s.pad_id != t.pad_id || s.bos_id != t.bos_id ||
      s.eos_id != t.eos_id || s.source_eos != t.source_eos)
    throw std::runtime_error(
        "the student's vocabulary or special tokens (vocab-size, pad, bos, eos, source-eos) "
        "differ from the teacher's (" +
        options.teacher + "): word distillation needs them equal");
}

int64_t train_on_teacher_distributions(const TrainConfig& student, const DistillOptions& options,
                                       const Teacher& teacher) {
  share_teacher_tokenizer(student, options, teacher);
  int64_t vocab = teacher.model->config().vocab_size;
  Distillation<data::Batch> distill;
  distill.weights = options.weights;
  distill.teacher_logits = [&](const data::Batch& b) {
    nn::Context ctx;  // inference: no dropout, and no tape records the teacher
    Var logits = teacher.model->forward(b.src, b.src_lengths, b.tgt_in, ctx);  // [B, T, V]
    return logits.value().reshape({-1, vocab});
  };
  return train_seq2seq(student, &distill);
}

}  // namespace

int64_t distill_seq2seq(const TrainConfig& student, const DistillOptions& options) {
  options.validate(model_dir::Family::seq2seq);
  student.validate();
  set_num_threads(threads_per_rank(student.threads));
  Teacher teacher = load_teacher(options, usable_device(student.device));
  fs::create_directories(student.model_dir);
  if (options.method_for(model_dir::Family::seq2seq) == "seq")
    return train_on_teacher_translations(student, options, std::move(teacher));
  return train_on_teacher_distributions(student, options, teacher);
}

}  // namespace qkv::train
