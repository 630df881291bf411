// distill_lm: a GPT student trained on a GPT teacher's next-token distributions (word-level
// distillation) over the student's training windows. Both must tokenize alike, so a new student
// takes the teacher's tokenizer: saved into its directory, where train_lm finds and keeps it.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>

#include "model_dir/gpt_dir.h"
#include "model_dir/quantized_weights.h"
#include "ops/precision.h"
#include "train/distill.h"
#include "train/lm_trainer.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {

std::string lm_teacher_file_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// "" when the two tokenize alike, else what differs. Beyond their settings, the files save()
// writes for each decide (the same pieces with other merges or scores tokenize otherwise).
std::string lm_teacher_tokenizer_difference(const data::LmTokenizer& student,
                                            const data::LmTokenizer& teacher) {
  if (student.type() != teacher.type())
    return "the student's is " + student.type() + ", the teacher's " + teacher.type();
  if (student.vocab_size() != teacher.vocab_size())
    return "the student's has " + std::to_string(student.vocab_size()) + " tokens, the teacher's " +
           std::to_string(teacher.vocab_size());
  if (student.bos_id() != teacher.bos_id() || student.eos_id() != teacher.eos_id() ||
      student.add_bos() != teacher.add_bos())
    return "their bos/eos tokens differ";
  fs::path scratch = fs::temp_directory_path() / ("qkv-distill-" + std::to_string(getpid()));
  fs::remove_all(scratch);
  student.save((scratch / "student").string());
  teacher.save((scratch / "teacher").string());
  std::string difference;
  for (const auto& f : fs::directory_iterator(scratch / "teacher")) {
    fs::path other = scratch / "student" / f.path().filename();
    if (!fs::exists(other) || lm_teacher_file_text(f.path()) != lm_teacher_file_text(other)) {
      difference = "their " + f.path().filename().string() + " differ";
      break;
    }
  }
  fs::remove_all(scratch);
  return difference;
}

// The student's model shape as train_lm will take it: the base's (init-from), the saved one
// (resuming), else the options' with the teacher's tokenizer.
nn::GptConfig lm_teacher_student_shape(const LmTrainConfig& cfg, const data::LmTokenizer& tok) {
  if (!cfg.init_from.empty())
    return model_dir::read_gpt_config(model_dir::existing_config_path(cfg.init_from));
  std::string saved = model_dir::config_path(cfg.model_dir);
  return fs::exists(saved) ? model_dir::read_gpt_config(saved)
                           : cfg.model_config(tok.vocab_size(), tok.bos_id(), tok.eos_id());
}

// Throws std::runtime_error naming both sides when the teacher cannot teach this student;
// returns whether the student has a tokenizer of its own (its base's or its directory's).
bool lm_teacher_check_pair(const LmTrainConfig& cfg, const model_dir::LanguageModel& teacher,
                           const std::string& teacher_dir) {
  const std::string differs = "the student's tokenizer differs from the teacher's: ";
  std::string source = cfg.init_from.empty() ? cfg.model_dir : cfg.init_from;
  bool own = data::LmTokenizer::exists_in(source);
  const data::LmTokenizer& tok = *teacher.tokenizer;
  if (own) {
    std::string d = lm_teacher_tokenizer_difference(*data::LmTokenizer::load_dir(source), tok);
    if (!d.empty())
      throw std::runtime_error(differs + d + " (" + source + ", " + teacher_dir + ")");
  } else if (cfg.tokenizer != tok.type() &&
             (tok.type() == "chars" || tok.type() == "sentencepiece")) {
    // A tokenizer the options could train: asking for another type is a mistake to name. (A
    // byte-bpe teacher's cannot be asked for, so the option means nothing there.)
    throw std::runtime_error(differs + "the options ask for " + cfg.tokenizer + ", the teacher (" +
                             teacher_dir + ") has " + tok.type() +
                             "; set tokenizer: " + tok.type());
  }
  nn::GptConfig student = lm_teacher_student_shape(cfg, tok);
  const nn::GptConfig& t = teacher.model->config();
  if (student.vocab_size != t.vocab_size)
    throw std::runtime_error("the student's vocab-size " + std::to_string(student.vocab_size) +
                             " differs from the teacher's " + std::to_string(t.vocab_size) + " (" +
                             teacher_dir + ")");
  if (student.context_length > t.context_length)
    throw std::runtime_error("the student's context-length " +
                             std::to_string(student.context_length) + " exceeds the teacher's " +
                             std::to_string(t.context_length) + " positions (" + teacher_dir + ")");
  return own;
}

}  // namespace

int64_t distill_lm(const LmTrainConfig& student, const DistillOptions& options) {
  options.validate(model_dir::Family::gpt);
  student.validate();
  options.check_teacher_family(model_dir::Family::gpt, "GPT");
  model_dir::LanguageModel t =
      model_dir::load_language_model_dir(options.teacher, options.teacher_checkpoint);
  if (!lm_teacher_check_pair(student, t, options.teacher))
    t.tokenizer->save(student.model_dir);  // a new student: train_lm takes it from there

  std::shared_ptr<nn::Gpt> teacher = std::move(t.model);
  Device device = usable_device(student.device);
  teacher->to(device);
  model_dir::apply_compute_type(options.teacher_compute_type, options.teacher,
                                options.teacher_checkpoint, device, teacher->linears());
  int64_t vocab = teacher->config().vocab_size;
  ops::MatmulPrecision precision = student.matmul_precision();
  Distillation<data::LmBatch> distill;
  distill.weights = options.weights;
  distill.teacher_logits = [teacher, vocab, precision](const data::LmBatch& b) {
    ops::AutocastScope autocast(precision);
    Var logits = teacher->forward(b.inputs.to(teacher->device()), nn::Context{});  // [B, L, V]
    return logits.value().reshape({-1, vocab});                                    // [B * L, V]
  };
  return train_lm(student, &distill);
}

}  // namespace qkv::train
