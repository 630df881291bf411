// SVG pictures written as plain text (svg_charts.cpp; the confusion matrix is in image_eval.h).
#pragma once
#include <string>
#include <vector>

namespace qkv::eval {

// Loss per update, and validation loss and scores, from metrics.jsonl as an SVG line chart.
// A missing file or one without update lines is an error naming it.
std::string training_curves_svg(const std::string& metrics_jsonl);

// Mixture-of-Experts routing as grouped bars: for each MoE layer, each expert's share of the
// routing choices (load[layer][expert], fractions summing to 1), with the uniform share 1 / E
// marked.
std::string expert_load_svg(const std::vector<std::vector<double>>& load, const std::string& title);

}  // namespace qkv::eval
