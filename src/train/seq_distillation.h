// Sequence-level distillation's corpus (Kim & Rush 2016): the teacher's beam-search translations
// of the student's training sources, in their order, kept in a folder of the student's model
// directory (distill/):
//   train.src, train.tgt   the corpus: each source and the teacher's translation, line for line
//   teacher.yaml           what made it (the teacher's weights' checksum, the beam, a checksum
//                          of the sources) and `complete: true` once train.tgt is whole
//   train.tgt.partial      while the teacher translates: the translations of whole chunks so far
// An interrupted pass continues after its last whole chunk; a complete corpus made the same way
// is reused as it is; one that another teacher, beam or set of sources made is made again.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "nn/seq2seq.h"
#include "ops/compute_type.h"

namespace qkv::train {

struct TeacherPass {
  const nn::Seq2Seq* teacher = nullptr;
  const data::Tokenizer* tokenizer = nullptr;
  int beam = 5;
  int64_t batch_tokens = 4096;     // source subwords per batch
  int64_t chunk_sentences = 2000;  // translated, then written and flushed to disk, at a time
  // The decoder's products; the encoder's follow the teacher's Linear layers (set by the caller
  // with nn::set_compute_type).
  ops::ComputeType compute_type = ops::ComputeType::f32;
};

// Translates `sources` with the teacher into `dir` (created) unless a matching corpus is there;
// returns the corpus spec (data/corpus.h) "<dir>/train.src,<dir>/train.tgt". `progress` is
// called after each chunk written with the sentences done and their total; `note` with what
// happened to an existing corpus (reused, continued, made again).
std::string make_seq_distillation_corpus(
    const TeacherPass& pass, const std::vector<std::string>& sources, const std::string& dir,
    const std::function<void(int64_t done, int64_t total)>& progress,
    const std::function<void(const std::string&)>& note);

}  // namespace qkv::train
