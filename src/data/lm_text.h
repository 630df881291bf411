// Training text for decoder-only language models: documents read from a plain or .xz file, and
// their tokens concatenated into one stream.
//
// A file is cut into documents in one of three ways (DocumentOptions):
//   - one document per line (the default); "\r\n" counts as a line break;
//   - the whole text split on a separator such as "\n\n" or "<|endoftext|>"; each document is
//     the text between two separators, exactly (only the separator is removed);
//   - one TSV column per line (1-based), e.g. column 3 (English) of data/bible.es-en.*.tsv.xz.
// Empty documents (empty lines, empty columns, nothing between two separators) are skipped and
// counted. The text must be valid UTF-8.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qkv::data {

struct DocumentOptions {
  std::string separator;    // empty: one document per line; otherwise split on this text
  int32_t text_column = 0;  // 1-based TSV column holding the document; 0: the whole line
};

struct DocumentCorpus {
  std::vector<std::string> documents;
  int64_t skipped_empty = 0;  // empty documents left out
  int64_t size() const { return int64_t(documents.size()); }
};

// Throws std::invalid_argument for inconsistent options (a column together with a separator, a
// negative column, a separator that is not valid UTF-8) and std::runtime_error for: a file that
// cannot be opened or is not valid .xz (named), invalid UTF-8 ("file:line"), a line without the
// column ("file:line", the column and the line's column count), a file without any document.
DocumentCorpus read_documents(const std::string& path, const DocumentOptions& options);

// The tokens of all documents, each as [bos] tokens [eos], one after the other.
struct TokenStream {
  std::vector<int32_t> tokens;
  int64_t documents = 0;
  // Unicode code points of the text, plus one per document for its end (the line break that
  // separates documents), for bits per character.
  int64_t characters = 0;
};

// Must be safe to call from several threads at once; returns ids >= 0.
using TokenizeFn = std::function<std::vector<int32_t>(std::string_view)>;

// Tokenizes the documents in parallel; the stream does not depend on the thread count. `bos` is
// put before each document when >= 0, `eos` after each when >= 0. Throws std::runtime_error
// (naming the document) for a negative id from `tokenize`; an exception from `tokenize` passes
// through (that of the first failing document).
TokenStream build_token_stream(const std::vector<std::string>& documents,
                               const TokenizeFn& tokenize, int32_t bos, int32_t eos);

// One line on standard error: documents, tokens and characters, and empty documents skipped.
void report_lm_text(const std::string& name, const DocumentCorpus& corpus,
                    const TokenStream& stream);

}  // namespace qkv::data
