// Parallel corpora for training: a TSV file `ref<TAB>src<TAB>tgt` or two line-aligned text
// files, each plain or .xz. Training text must be valid UTF-8; pairs with an empty side are
// dropped and counted.
//
// A corpus spec names the files in one string:
//   "data/bible.es-en.train.tsv.xz"   one TSV file (any name; ".xz" means compressed)
//   "train.es,train.en"               source file, comma, target file (each may end in .xz)
// File names must not contain a comma.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qkv::data {

struct ParallelCorpus {
  std::vector<std::string> src;   // source sentences
  std::vector<std::string> tgt;   // target sentences, tgt[i] translates src[i]
  std::vector<std::string> refs;  // TSV: the first column per pair; parallel files: empty
  int64_t skipped_empty = 0;      // pairs dropped because a side was empty or only whitespace
  int64_t size() const { return int64_t(src.size()); }
};

// Throws std::runtime_error for: a file that cannot be opened (named), an invalid .xz file,
// a line without exactly 3 tab-separated fields ("file:line"), invalid UTF-8 ("file:line").
ParallelCorpus read_tsv(const std::string& path);
// Line i of `src_path` pairs with line i of `tgt_path`. Throws std::runtime_error for the
// errors above and for files with different line counts (both files and counts named).
ParallelCorpus read_parallel(const std::string& src_path, const std::string& tgt_path);
// Reads a corpus spec (see the top of this file); std::invalid_argument for a malformed spec.
ParallelCorpus read_corpus(const std::string& spec);

// One line on standard error: pairs read and, when any, pairs skipped as empty.
void report_corpus(const std::string& name, const ParallelCorpus& corpus);

}  // namespace qkv::data
