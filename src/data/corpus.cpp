#include "data/corpus.h"

#include <cstdio>
#include <stdexcept>
#include <string_view>

#include "data/line_reader.h"
#include "data/utf8.h"

namespace qkv::data {
namespace {

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\f\v") == std::string_view::npos;
}

void check_utf8(const LineReader& reader, std::string_view line) {
  size_t bad = find_invalid_utf8(line);
  if (bad != std::string_view::npos)
    throw std::runtime_error(reader.where() + ": invalid UTF-8 at byte " + std::to_string(bad + 1) +
                             " of the line");
}

void add_pair(ParallelCorpus& corpus, std::string_view src, std::string_view tgt) {
  if (is_blank(src) || is_blank(tgt)) {
    ++corpus.skipped_empty;
    return;
  }
  corpus.src.emplace_back(src);
  corpus.tgt.emplace_back(tgt);
}

}  // namespace

ParallelCorpus read_tsv(const std::string& path) {
  ParallelCorpus corpus;
  LineReader reader(path);
  std::string line;
  while (reader.next(line)) {
    check_utf8(reader, line);
    if (is_blank(line)) {
      ++corpus.skipped_empty;
      continue;
    }
    size_t tab1 = line.find('\t');
    size_t tab2 = tab1 == std::string::npos ? tab1 : line.find('\t', tab1 + 1);
    if (tab2 == std::string::npos || line.find('\t', tab2 + 1) != std::string::npos) {
      size_t fields = 1;
      for (char c : line) fields += c == '\t';
      throw std::runtime_error(reader.where() +
                               ": expected 3 tab-separated fields (ref<TAB>src<TAB>tgt), found " +
                               std::to_string(fields));
    }
    std::string_view view(line);
    int64_t before = corpus.size();
    add_pair(corpus, view.substr(tab1 + 1, tab2 - tab1 - 1), view.substr(tab2 + 1));
    if (corpus.size() > before) corpus.refs.emplace_back(view.substr(0, tab1));
  }
  return corpus;
}

ParallelCorpus read_parallel(const std::string& src_path, const std::string& tgt_path) {
  ParallelCorpus corpus;
  LineReader src_reader(src_path), tgt_reader(tgt_path);
  std::string src, tgt;
  for (;;) {
    bool has_src = src_reader.next(src), has_tgt = tgt_reader.next(tgt);
    if (has_src != has_tgt) {
      LineReader& longer = has_src ? src_reader : tgt_reader;
      std::string rest;
      while (longer.next(rest)) {
      }
      throw std::runtime_error("parallel files differ in length: " + src_reader.path() + " has " +
                               std::to_string(src_reader.line_number()) + " lines, " +
                               tgt_reader.path() + " has " +
                               std::to_string(tgt_reader.line_number()) + " lines");
    }
    if (!has_src) break;
    check_utf8(src_reader, src);
    check_utf8(tgt_reader, tgt);
    add_pair(corpus, src, tgt);
  }
  return corpus;
}

ParallelCorpus read_corpus(const std::string& spec) {
  size_t comma = spec.find(',');
  if (comma == std::string::npos) {
    if (spec.empty()) throw std::invalid_argument("empty corpus spec; expected 'file.tsv[.xz]'");
    return read_tsv(spec);
  }
  std::string src = spec.substr(0, comma), tgt = spec.substr(comma + 1);
  if (src.empty() || tgt.empty() || tgt.find(',') != std::string::npos)
    throw std::invalid_argument("corpus spec '" + spec +
                                "': expected 'file.tsv[.xz]' or 'source_file,target_file'");
  return read_parallel(src, tgt);
}

void report_corpus(const std::string& name, const ParallelCorpus& corpus) {
  std::fprintf(stderr, "%s: %lld sentence pairs", name.c_str(), (long long)corpus.size());
  if (corpus.skipped_empty > 0)
    std::fprintf(stderr, " (skipped %lld pairs with an empty side)",
                 (long long)corpus.skipped_empty);
  std::fprintf(stderr, "\n");
}

}  // namespace qkv::data
