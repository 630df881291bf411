#include "data/lm_text.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>

#include "data/line_reader.h"
#include "data/utf8.h"

namespace qkv::data {
namespace {

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
}

void add_document(DocumentCorpus& corpus, std::string_view text) {
  if (is_blank(text))
    ++corpus.skipped_empty;
  else
    corpus.documents.emplace_back(text);
}

void check_utf8_line(const LineReader& reader, std::string_view line) {
  size_t bad = find_invalid_utf8(line);
  if (bad != std::string_view::npos)
    throw std::runtime_error(reader.where() + ": invalid UTF-8 at byte " + std::to_string(bad + 1) +
                             " of the line");
}

// Field `column` (1-based) of a tab-separated line.
std::string_view tsv_field(const LineReader& reader, std::string_view line, int32_t column) {
  size_t begin = 0;
  for (int32_t c = 1; c < column; ++c) {
    size_t tab = line.find('\t', begin);
    if (tab == std::string_view::npos) {
      int64_t columns = 1 + std::count(line.begin(), line.end(), '\t');
      throw std::runtime_error(reader.where() + ": no column " + std::to_string(column) +
                               ", the line has " + std::to_string(columns) +
                               " tab-separated columns");
    }
    begin = tab + 1;
  }
  size_t end = line.find('\t', begin);
  return line.substr(begin, end == std::string_view::npos ? line.npos : end - begin);
}

void read_lines(const std::string& path, int32_t text_column, DocumentCorpus& corpus) {
  LineReader reader(path);
  std::string line;
  while (reader.next(line)) {
    check_utf8_line(reader, line);
    if (text_column == 0 || is_blank(line))  // a blank line is an empty document, not an error
      add_document(corpus, line);
    else
      add_document(corpus, tsv_field(reader, line, text_column));
  }
}

std::string read_whole(const std::string& path) {
  auto source = open_byte_source(path);
  std::string text;
  std::vector<char> buffer(1 << 16);
  while (size_t n = source->read(buffer.data(), buffer.size())) text.append(buffer.data(), n);
  return text;
}

void read_separated(const std::string& path, const std::string& separator, DocumentCorpus& corpus) {
  std::string text = read_whole(path);
  size_t bad = find_invalid_utf8(text);
  if (bad != std::string::npos) {
    size_t newline = text.rfind('\n', bad);  // text[bad] is not '\n', which is valid
    size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    int64_t line = 1 + std::count(text.begin(), text.begin() + int64_t(bad), '\n');
    throw std::runtime_error(path + ":" + std::to_string(line) + ": invalid UTF-8 at byte " +
                             std::to_string(bad - line_start + 1) + " of the line");
  }
  std::string_view rest(text);
  for (;;) {
    size_t at = rest.find(separator);
    add_document(corpus, rest.substr(0, at));
    if (at == std::string_view::npos) break;
    rest.remove_prefix(at + separator.size());
  }
}

int64_t code_points(std::string_view text) {
  // Valid UTF-8: every code point has exactly one byte that is not a continuation byte.
  return std::count_if(text.begin(), text.end(),
                       [](char c) { return (uint8_t(c) & 0xC0) != 0x80; });
}

}  // namespace

DocumentCorpus read_documents(const std::string& path, const DocumentOptions& options) {
  if (options.text_column < 0)
    throw std::invalid_argument("text column must be 1 or more (0 for the whole line), got " +
                                std::to_string(options.text_column));
  if (options.text_column > 0 && !options.separator.empty())
    throw std::invalid_argument("a text column (" + std::to_string(options.text_column) +
                                ") and a document separator cannot be combined");
  if (!is_valid_utf8(options.separator))
    throw std::invalid_argument("the document separator is not valid UTF-8");
  DocumentCorpus corpus;
  if (options.separator.empty())
    read_lines(path, options.text_column, corpus);
  else
    read_separated(path, options.separator, corpus);
  if (corpus.documents.empty())
    throw std::runtime_error(path + ": no document (the file is empty or every document is)");
  return corpus;
}

TokenStream build_token_stream(const std::vector<std::string>& documents,
                               const TokenizeFn& tokenize, int32_t bos, int32_t eos) {
  const int64_t n = int64_t(documents.size());
  std::vector<std::vector<int32_t>> ids(documents.size());
  std::vector<int64_t> characters(documents.size());
  std::vector<std::exception_ptr> errors(documents.size());  // none may leave the parallel loop
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t d = 0; d < n; ++d) {
    try {
      ids[d] = tokenize(documents[d]);
      characters[d] = code_points(documents[d]) + 1;
    } catch (...) {
      errors[d] = std::current_exception();
    }
  }
  TokenStream stream;
  stream.documents = n;
  size_t total = 0;
  for (int64_t d = 0; d < n; ++d) {
    if (errors[d]) std::rethrow_exception(errors[d]);
    auto negative = std::find_if(ids[d].begin(), ids[d].end(), [](int32_t id) { return id < 0; });
    if (negative != ids[d].end())
      throw std::runtime_error("the tokenizer returned id " + std::to_string(*negative) +
                               " for document " + std::to_string(d + 1));
    total += ids[d].size() + (bos >= 0) + (eos >= 0);
    stream.characters += characters[d];
  }
  stream.tokens.reserve(total);
  for (auto& doc : ids) {
    if (bos >= 0) stream.tokens.push_back(bos);
    stream.tokens.insert(stream.tokens.end(), doc.begin(), doc.end());
    if (eos >= 0) stream.tokens.push_back(eos);
    std::vector<int32_t>().swap(doc);  // frees each document's ids once copied
  }
  return stream;
}

void report_lm_text(const std::string& name, const DocumentCorpus& corpus,
                    const TokenStream& stream) {
  std::fprintf(stderr, "%s: %lld documents, %lld tokens, %lld characters", name.c_str(),
               (long long)corpus.size(), (long long)stream.tokens.size(),
               (long long)stream.characters);
  if (corpus.skipped_empty > 0)
    std::fprintf(stderr, " (skipped %lld empty documents)", (long long)corpus.skipped_empty);
  std::fprintf(stderr, "\n");
}

}  // namespace qkv::data
