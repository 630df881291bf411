// Test support: the first pairs of the bundled Spanish-English training corpus as small files,
// written once per test process.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>

#include "data/corpus.h"
#include "support/torch_ref.h"

namespace qkv::test {

// The first n pairs as a TSV file (ref, Spanish, English).
inline std::string bible_pairs(size_t n) {
  std::string path = temp_path("bible_" + std::to_string(n) + ".tsv");
  if (std::filesystem::exists(path)) return path;
  data::ParallelCorpus c =
      data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.train.tsv.xz");
  std::ofstream out(path);
  for (size_t i = 0; i < n; ++i) out << "ref\t" << c.src[i] << "\t" << c.tgt[i] << "\n";
  return path;
}

// The English side of the first n pairs, one verse per line.
inline std::string bible_english(size_t n) {
  std::string path = temp_path("bible_" + std::to_string(n) + ".en");
  if (std::filesystem::exists(path)) return path;
  data::ParallelCorpus c = data::read_tsv(bible_pairs(n));
  std::ofstream out(path);
  for (const std::string& line : c.tgt) out << line << "\n";
  return path;
}

}  // namespace qkv::test
