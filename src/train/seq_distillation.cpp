#include "train/seq_distillation.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "config/options.h"
#include "decode/translator.h"
#include "io/atomic_file.h"
#include "nn/lora.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {

std::string lines_checksum(const std::vector<std::string>& sources) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits, over the lines and their ends
  for (const auto& line : sources) {
    for (unsigned char c : line) h = (h ^ c) * 0x100000001b3ull;
    h = (h ^ '\n') * 0x100000001b3ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string("fnv1a64:") + hex;
}

// teacher.yaml without its last line (`complete: ...`): what a corpus was made from.
std::string corpus_origin(const TeacherPass& pass, const std::vector<std::string>& sources) {
  std::vector<std::string> tokenizer = pass.tokenizer->vocabulary();
  tokenizer.push_back(pass.tokenizer->serialized());
  return "teacher-weights: " + nn::weights_checksum(pass.teacher->params()) +
         "\nteacher-tokenizer: " + lines_checksum(tokenizer) +
         "\nteacher-beam: " + std::to_string(pass.beam) +
         "\nteacher-compute-type: " + ops::compute_type_name(pass.compute_type) +
         "\nsources: " + lines_checksum(sources) +
         "\nsentences: " + std::to_string(sources.size()) + "\n";
}

// The whole lines of a partial file (a line cut by a kill is dropped from the file).
int64_t whole_lines(const std::string& path) {
  if (!fs::exists(path)) return 0;
  std::string text = read_file(path, "partial teacher translations");
  size_t end = text.rfind('\n');
  size_t keep = end == std::string::npos ? 0 : end + 1;
  if (keep < text.size()) fs::resize_file(path, keep);
  int64_t lines = 0;
  for (size_t i = 0; i < keep; ++i) lines += text[i] == '\n';
  return lines;
}

void append_durably(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "ab");
  if (!f) throw std::runtime_error(path + ": cannot open for writing");
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
            ::fsync(fileno(f)) == 0;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw std::runtime_error(path + ": cannot write (disk full?)");
}

}  // namespace

std::string make_seq_distillation_corpus(const TeacherPass& pass,
                                         const std::vector<std::string>& sources,
                                         const std::string& dir,
                                         const std::function<void(int64_t, int64_t)>& progress,
                                         const std::function<void(const std::string&)>& note) {
  fs::create_directories(dir);
  std::string manifest = dir + "/teacher.yaml", src = dir + "/train.src", tgt = dir + "/train.tgt",
              partial = tgt + ".partial";
  std::string origin = corpus_origin(pass, sources);
  bool same = fs::exists(manifest) && read_file(manifest).rfind(origin, 0) == 0;
  if (same && read_yaml_scalar(manifest, "complete") == "true" && fs::exists(src) &&
      fs::exists(tgt)) {
    note("reusing the teacher's translations in " + dir);
    return src + "," + tgt;
  }
  if (!same) {
    if (fs::exists(manifest))
      note(dir + " holds the translations of another teacher, beam or corpus: translating again");
    for (const auto& stale : {src, tgt, partial}) fs::remove(stale);
    write_file_atomic(manifest, origin + "complete: false\n");
  }
  int64_t total = int64_t(sources.size()), done = whole_lines(partial);
  if (done > total) throw std::runtime_error(partial + ": more lines than the corpus has");
  if (done > 0)
    note("continuing the teacher's translations after sentence " + std::to_string(done));

  decode::TranslatorOptions options;
  options.search.beam = pass.beam;
  options.batch_tokens = pass.batch_tokens;
  options.compute_type = pass.compute_type;
  decode::Translator translator(*pass.teacher, *pass.tokenizer, options);
  for (int64_t begin = done; begin < total; begin += pass.chunk_sentences) {
    int64_t end = std::min(total, begin + pass.chunk_sentences);
    std::vector<std::string> chunk(sources.begin() + begin, sources.begin() + end);
    std::string text;
    for (const auto& nbest : translator.translate(chunk)) text += nbest[0].text + "\n";
    append_durably(partial, text);
    progress(end, total);
  }
  std::string all_sources;
  for (const auto& line : sources) all_sources += line + "\n";
  write_file_atomic(src, all_sources);
  if (!fs::exists(partial)) append_durably(partial, "");  // no sources: an empty corpus
  fs::rename(partial, tgt);
  write_file_atomic(manifest, origin + "complete: true\n");
  return src + "," + tgt;
}

}  // namespace qkv::train
