#include "eval/image_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

#include "data/image_loader.h"
#include "io/atomic_file.h"

namespace qkv::eval {

namespace fs = std::filesystem;

ImagePredictions predict_images(const nn::ViT& model, const data::ImageSet& set,
                                int64_t batch_size) {
  const nn::ViTConfig& c = model.config();
  data::Normalization norm{c.mean, c.stddev};
  int64_t n = set.size(), k = c.num_classes();
  ImagePredictions out;
  out.probabilities = Tensor::empty({n, k});
  nn::Context ctx;  // inference: no dropout, no tape
  double loss = 0;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    std::vector<int64_t> indices;
    for (int64_t i = begin; i < std::min(n, begin + batch_size); ++i) indices.push_back(i);
    data::ImageBatch b = data::make_image_batch(set, indices, norm);
    Device device = model.device();
    Tensor logits = model.forward(b.images.to(device), ctx).value();  // [B, classes]
    Tensor lse;
    Tensor losses = ops::cross_entropy_forward(logits, b.labels.to(device), -1, 0.f, lse);
    for (float l : losses.to_vector()) loss += l;
    logits = logits.to(Device::cpu);
    Tensor probs = ops::softmax_forward(logits);
    std::copy_n(probs.data<float>(), probs.numel(), out.probabilities.data<float>() + begin * k);
    Tensor best = ops::argmax_rows(logits);
    out.predicted.insert(out.predicted.end(), best.data<int32_t>(),
                         best.data<int32_t>() + best.numel());
  }
  out.loss = n > 0 ? loss / double(n) : 0;
  return out;
}

std::vector<std::vector<ClassScore>> classify_images(const nn::ViT& model,
                                                     const std::vector<Tensor>& images, int64_t k) {
  const nn::ViTConfig& c = model.config();
  int64_t per_image = c.channels * c.image_size * c.image_size;
  data::ImageSet set;
  set.classes = c.classes;
  set.pixels =
      Tensor::empty({int64_t(images.size()), c.channels, c.image_size, c.image_size}, DType::u8);
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].shape() != Shape{c.channels, c.image_size, c.image_size})
      throw std::invalid_argument("classify_images: image " + std::to_string(i) +
                                  " does not have the model's shape");
    std::copy_n(images[i].data<uint8_t>(), per_image,
                set.pixels.data<uint8_t>() + int64_t(i) * per_image);
    set.labels.push_back(0);
  }
  ImagePredictions p = predict_images(model, set);
  int64_t classes = c.num_classes(), top = std::clamp<int64_t>(k, 1, classes);
  std::vector<std::vector<ClassScore>> result(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const float* probs = p.probabilities.data<float>() + int64_t(i) * classes;
    std::vector<int64_t> order(static_cast<size_t>(classes));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return probs[x] > probs[y]; });
    for (int64_t j = 0; j < top; ++j) {
      int64_t cls = order[size_t(j)];
      result[i].push_back({cls, c.classes[size_t(cls)], probs[cls]});
    }
  }
  return result;
}

double ClassificationReport::accuracy() const {
  return total > 0 ? 100.0 * double(correct) / double(total) : 0;
}

std::vector<double> ClassificationReport::per_class_accuracy() const {
  size_t k = classes.size();
  std::vector<double> out;
  for (size_t i = 0; i < k; ++i) {
    int64_t row = 0;
    for (size_t j = 0; j < k; ++j) row += confusion[i * k + j];
    out.push_back(row > 0 ? 100.0 * double(confusion[i * k + i]) / double(row) : NAN);
  }
  return out;
}

std::string ClassificationReport::format() const {
  size_t k = classes.size(), width = 5;
  for (const auto& c : classes) width = std::max(width, c.size());
  char buf[256];
  std::snprintf(buf, sizeof buf, "accuracy %.2f%% (%lld of %lld images)\n\n", accuracy(),
                (long long)correct, (long long)total);
  std::string out = buf;
  out += std::string(width, ' ') + "  accuracy  images\n";
  std::vector<double> per_class = per_class_accuracy();
  for (size_t i = 0; i < k; ++i) {
    int64_t row = 0;
    for (size_t j = 0; j < k; ++j) row += confusion[i * k + j];
    std::snprintf(buf, sizeof buf, "%-*s  %7.2f%%  %6lld\n", int(width), classes[i].c_str(),
                  per_class[i], (long long)row);
    out += buf;
  }
  out += "\nconfusion matrix (rows: true class, columns: predicted class, in the order above)\n";
  for (size_t i = 0; i < k; ++i) {
    std::snprintf(buf, sizeof buf, "%-*s", int(width), classes[i].c_str());
    out += buf;
    for (size_t j = 0; j < k; ++j) {
      std::snprintf(buf, sizeof buf, " %5lld", (long long)confusion[i * k + j]);
      out += buf;
    }
    out += "\n";
  }
  return out;
}

ClassificationReport classification_report(const std::vector<int32_t>& labels,
                                           const std::vector<int32_t>& predicted,
                                           const std::vector<std::string>& classes) {
  if (labels.size() != predicted.size())
    throw std::invalid_argument("classification_report: " + std::to_string(labels.size()) +
                                " labels but " + std::to_string(predicted.size()) + " predictions");
  ClassificationReport r;
  r.classes = classes;
  size_t k = classes.size();
  r.confusion.assign(k * k, 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    size_t t = size_t(labels[i]), p = size_t(predicted[i]);
    if (t >= k || p >= k)
      throw std::invalid_argument("classification_report: class index out of range at item " +
                                  std::to_string(i));
    ++r.confusion[t * k + p];
    r.correct += t == p;
  }
  r.total = int64_t(labels.size());
  return r;
}

ClassificationReport evaluate_image_model(const nn::ViT& model, const std::string& test_spec,
                                          const std::string& report_dir,
                                          const std::string& metrics_jsonl, int64_t batch_size) {
  const nn::ViTConfig& c = model.config();
  data::ImageSet test =
      data::open_image_set(test_spec, {c.channels, c.image_size, c.image_size}, c.classes);
  ImagePredictions p = predict_images(model, test, batch_size);
  ClassificationReport report = classification_report(test.labels, p.predicted, c.classes);
  std::cout << test_spec << ": " << test.size() << " images, cross-entropy " << p.loss << "\n"
            << report.format();
  fs::create_directories(report_dir);
  write_file_atomic(report_dir + "/confusion.svg", confusion_svg(report));
  std::cout << "wrote " << report_dir << "/confusion.svg\n";
  if (fs::exists(metrics_jsonl)) {
    write_file_atomic(report_dir + "/training_curves.svg", training_curves_svg(metrics_jsonl));
    std::cout << "wrote " << report_dir << "/training_curves.svg\n";
  }
  return report;
}

}  // namespace qkv::eval
