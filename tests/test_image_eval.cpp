// Classification reports: accuracy, per-class accuracy, the confusion matrix as text and SVG,
// and training curves drawn from metrics.jsonl.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "eval/image_eval.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

TEST(ImageEval, ReportCountsAccuracyPerClassAndConfusions) {
  std::vector<std::string> classes{"cat", "dog & co", "<bird>"};
  // true:      0 0 0 1 1 2
  // predicted: 0 0 1 1 0 2
  eval::ClassificationReport r =
      eval::classification_report({0, 0, 0, 1, 1, 2}, {0, 0, 1, 1, 0, 2}, classes);
  EXPECT_EQ(r.total, 6);
  EXPECT_EQ(r.correct, 4);
  EXPECT_NEAR(r.accuracy(), 400.0 / 6, 1e-9);
  EXPECT_EQ(r.confusion, (std::vector<int64_t>{2, 1, 0, 1, 1, 0, 0, 0, 1}));
  std::vector<double> per_class = r.per_class_accuracy();
  EXPECT_NEAR(per_class[0], 200.0 / 3, 1e-9);
  EXPECT_NEAR(per_class[1], 50, 1e-9);
  EXPECT_NEAR(per_class[2], 100, 1e-9);
  std::string text = r.format();
  EXPECT_NE(text.find("accuracy 66.67% (4 of 6 images)"), std::string::npos) << text;
  EXPECT_NE(text.find("dog & co    50.00%       2"), std::string::npos) << text;
  EXPECT_NE(text.find("cat          2     1     0"), std::string::npos) << text;

  std::string svg = eval::confusion_svg(r);
  EXPECT_TRUE(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_NE(svg.find(">dog &amp; co</text>"), std::string::npos);
  EXPECT_NE(svg.find(">&lt;bird&gt;</text>"), std::string::npos);
  EXPECT_NE(svg.find("66.67% of 6 images correct"), std::string::npos);
  EXPECT_TRUE(svg.ends_with("</svg>\n"));

  EXPECT_THROW(eval::classification_report({0, 3}, {0, 0}, classes), std::invalid_argument);
  EXPECT_THROW(eval::classification_report({0}, {0, 0}, classes), std::invalid_argument);
}

TEST(ImageEval, TrainingCurvesComeFromMetricsJsonl) {
  std::string path = temp_path("metrics.jsonl");
  std::ofstream(path) << R"({"event":"start","text":"new"}
{"event":"update","update":50,"loss":2.1,"images_per_s":100}
{"event":"update","update":100,"loss":1.5,"images_per_s":100}
{"event":"valid","update":100,"valid_loss":1.4,"accuracy":61.5,"best":true}
{"event":"update","update":150,"loss":1.2,"images_per_s":100}
)";
  std::string svg = eval::training_curves_svg(path);
  EXPECT_NE(svg.find("training loss"), std::string::npos);
  EXPECT_NE(svg.find("validation loss"), std::string::npos);
  EXPECT_NE(svg.find(">accuracy</text>"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '\n') > 10, true);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);

  std::ofstream(path) << R"({"event":"start","text":"new"})"
                      << "\n";
  EXPECT_THROW(eval::training_curves_svg(path), std::runtime_error);
  std::ofstream(path) << "not json\n";
  try {
    eval::training_curves_svg(path);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":1: not JSON"), std::string::npos) << e.what();
  }
  EXPECT_THROW(eval::training_curves_svg(path + ".missing"), std::runtime_error);
}

}  // namespace
}  // namespace qkv::test
