// distill_vit: a ViT student trained on a ViT teacher's soft targets (its logits for each
// augmented training image). The teacher's pixel normalisation is kept: each batch, normalised
// with the student's mean and std, is renormalised with the teacher's before the teacher sees it,
// so that the teacher sees images as it was trained (a new student's statistics come from its
// own training images and rarely equal the teacher's, so refusing a difference would refuse
// almost every pair).
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>

#include "data/image_set.h"
#include "model_dir/quantized_weights.h"
#include "model_dir/vit_dir.h"
#include "ops/precision.h"
#include "train/distill.h"
#include "train/vit_trainer.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {

std::string vit_teacher_list(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return "[" + s + "]";
}

// The student's model shape as train_vit will take it: the base's (init-from), the saved one
// (resuming), else the options'.
nn::ViTConfig vit_teacher_student_shape(const ViTTrainConfig& cfg) {
  if (!cfg.init_from.empty())
    return model_dir::read_vit_config(model_dir::existing_config_path(cfg.init_from));
  std::string saved = model_dir::config_path(cfg.model_dir);
  return fs::exists(saved) ? model_dir::read_vit_config(saved) : cfg.model_config();
}

// Throws std::runtime_error naming both sides when the teacher cannot teach this student.
void vit_teacher_check_pair(const ViTTrainConfig& cfg, const nn::ViTConfig& teacher,
                            const std::string& teacher_dir) {
  nn::ViTConfig student = vit_teacher_student_shape(cfg);
  if (student.channels != teacher.channels || student.image_size != teacher.image_size)
    throw std::runtime_error("the student's images (" + std::to_string(student.channels) +
                             " channels of " + std::to_string(student.image_size) + "x" +
                             std::to_string(student.image_size) + ") differ from the teacher's (" +
                             teacher_dir + ": " + std::to_string(teacher.channels) +
                             " channels of " + std::to_string(teacher.image_size) + "x" +
                             std::to_string(teacher.image_size) + ")");
  // A base or a saved model labels the training set with its classes; else the set's own.
  std::vector<std::string> classes =
      !student.classes.empty()
          ? student.classes
          : data::open_image_set(cfg.train_set,
                                 {student.channels, student.image_size, student.image_size})
                .classes;
  if (classes != teacher.classes)
    throw std::runtime_error("the student's classes " + vit_teacher_list(classes) + " (" +
                             cfg.train_set + ") differ from the teacher's " +
                             vit_teacher_list(teacher.classes) + " (" + teacher_dir +
                             "): the same classes in the same order are needed");
}

// x * scale + shift per channel, taking images normalised with one mean and std to another's.
struct VitTeacherRenormalization {
  std::vector<float> scale, shift;  // [C]
};

std::optional<VitTeacherRenormalization> vit_teacher_renormalization(const nn::ViTConfig& student,
                                                                     const nn::ViTConfig& teacher) {
  if (student.mean == teacher.mean && student.stddev == teacher.stddev) return std::nullopt;
  VitTeacherRenormalization r;
  for (size_t c = 0; c < teacher.mean.size(); ++c) {
    // (x s_s + m_s - m_t) / s_t: the pixel in [0, 1] recovered, then normalised as the teacher.
    r.scale.push_back(student.stddev[c] / teacher.stddev[c]);
    r.shift.push_back((student.mean[c] - teacher.mean[c]) / teacher.stddev[c]);
  }
  return r;
}

Tensor vit_teacher_renormalize(const Tensor& images, const VitTeacherRenormalization& r) {
  Tensor out = images.to(Device::cpu).clone();  // [B, C, H, W]
  int64_t channels = out.size(1), plane = out.size(2) * out.size(3);
  float* x = out.data<float>();
  for (int64_t i = 0; i < out.size(0) * channels; ++i) {
    size_t c = size_t(i % channels);
    for (int64_t j = 0; j < plane; ++j)
      x[i * plane + j] = x[i * plane + j] * r.scale[c] + r.shift[c];
  }
  return out;
}

}  // namespace

int64_t distill_vit(const ViTTrainConfig& student, const DistillOptions& options) {
  options.validate(model_dir::Family::vit);
  student.validate();
  options.check_teacher_family(model_dir::Family::vit, "ViT");
  std::shared_ptr<nn::ViT> teacher =
      model_dir::load_vit_dir(options.teacher, options.teacher_checkpoint);
  vit_teacher_check_pair(student, teacher->config(), options.teacher);
  Device device = usable_device(student.device);
  teacher->to(device);
  model_dir::apply_compute_type(options.teacher_compute_type, options.teacher,
                                options.teacher_checkpoint, device, teacher->linears());

  // The student's normalisation is known once train_vit has written its config.yaml (a new
  // student's comes from its training images), which it does before the first batch; a LoRA
  // student's is its base's.
  auto renormalization = std::make_shared<std::optional<VitTeacherRenormalization>>();
  auto resolved = std::make_shared<bool>(false);
  ops::MatmulPrecision precision = student.matmul_precision();
  Distillation<data::ImageBatch> distill;
  distill.weights = options.weights;
  distill.teacher_logits = [=](const data::ImageBatch& b) {
    if (!*resolved) {
      std::string dir = fs::exists(model_dir::config_path(student.model_dir)) ? student.model_dir
                                                                              : student.init_from;
      *renormalization = vit_teacher_renormalization(
          model_dir::read_vit_config(model_dir::config_path(dir)), teacher->config());
      *resolved = true;
    }
    Tensor images = *renormalization ? vit_teacher_renormalize(b.images, **renormalization)
                                     : b.images;  // [B, C, H, W]
    ops::AutocastScope autocast(precision);
    return teacher->forward(images.to(teacher->device()), nn::Context{}).value();  // [B, classes]
  };
  return train_vit(student, &distill);
}

}  // namespace qkv::train
