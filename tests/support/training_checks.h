// Test support for training runs: the message an error carries, two model directories'
// weights compared bit for bit (a resumed run against an unbroken one), and the validation loss
// a run logged last.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "io/safetensors.h"

namespace qkv::test {

// The message of what `f` throws ("" when nothing).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Two safetensors files: the same tensors, bit for bit.
inline void expect_same_tensors(const std::string& a_path, const std::string& b_path) {
  auto a = load_safetensors(a_path), b = load_safetensors(b_path);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    ASSERT_EQ(a[i].second.nbytes(), b[i].second.nbytes());
    EXPECT_EQ(std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()), 0)
        << a[i].first << " differs after resuming";
  }
}

// model.safetensors of the two model directories: the same tensors, bit for bit.
inline void expect_same_weights(const std::string& a_dir, const std::string& b_dir) {
  expect_same_tensors(a_dir + "/model.safetensors", b_dir + "/model.safetensors");
}

// valid_loss of the last validation in dir/metrics.jsonl (-1 when none).
inline double last_valid_loss(const std::string& dir) {
  double loss = -1;
  std::ifstream lines(dir + "/metrics.jsonl");
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("event", "") == "valid") loss = j.at("valid_loss").get<double>();
  }
  return loss;
}

}  // namespace qkv::test
