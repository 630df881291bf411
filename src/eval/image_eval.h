// Classifying image sets with a ViT, and what a person reads from the result: accuracy,
// per-class accuracy, a confusion matrix (as text and as an SVG picture), and the training
// curves of a model directory's metrics.jsonl (SVG).
#pragma once
#include <string>
#include <vector>

#include "data/image_set.h"
#include "eval/svg_charts.h"
#include "nn/vit.h"

namespace qkv::eval {

struct ImagePredictions {
  Tensor probabilities;            // f32 [N, classes]
  std::vector<int32_t> predicted;  // [N], the most probable class
  double loss = 0;                 // mean cross-entropy against the set's labels
};

// Runs `model` (inference, no dropout) over `set` in batches, normalised with the model's
// mean and std. The set's images must have the model's shape.
ImagePredictions predict_images(const nn::ViT& model, const data::ImageSet& set,
                                int64_t batch_size = 256);

// One class of an image's top-k: its index into the model's classes, name and probability.
struct ClassScore {
  int64_t index = 0;
  std::string label;
  float probability = 0;
};

// Classifies images u8 [C, H, W] of the model's shape (data::load_image, decode_image and
// image_from_pixels bring any image to it): for each, its k most probable classes (k clamped to
// [1, classes]), most probable first, ties by class index. What `qkv classify`, the server and
// the Python module answer.
std::vector<std::vector<ClassScore>> classify_images(const nn::ViT& model,
                                                     const std::vector<Tensor>& images, int64_t k);

struct ClassificationReport {
  std::vector<std::string> classes;
  std::vector<int64_t> confusion;  // [true class][predicted class], row-major
  int64_t total = 0, correct = 0;

  double accuracy() const;  // percent
  // Percent of each class's images classified correctly (NaN for a class with none).
  std::vector<double> per_class_accuracy() const;
  // Accuracy, a per-class table and the confusion matrix, as plain text.
  std::string format() const;
};
ClassificationReport classification_report(const std::vector<int32_t>& labels,
                                           const std::vector<int32_t>& predicted,
                                           const std::vector<std::string>& classes);

// The confusion matrix as an SVG heat map (rows: true class, columns: predicted).
std::string confusion_svg(const ClassificationReport& report);

// `qkv eval` on images: classifies the test set `test_spec` (see data/image_set.h) with
// `model`, prints the report, and writes confusion.svg and (when `metrics_jsonl` exists, the
// training run's metrics.jsonl) training_curves.svg into report_dir (created). Returns the
// report.
ClassificationReport evaluate_image_model(const nn::ViT& model, const std::string& test_spec,
                                          const std::string& report_dir,
                                          const std::string& metrics_jsonl, int64_t batch_size);

}  // namespace qkv::eval
