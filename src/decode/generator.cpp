#include "decode/generator.h"

#include <algorithm>
#include <stdexcept>

#include "data/utf8.h"

namespace qkv::decode {

namespace {

// Bytes at the end of s that start a UTF-8 character not yet complete (0 to 3).
size_t incomplete_utf8_tail(std::string_view s) {
  for (size_t i = 1; i <= std::min<size_t>(3, s.size()); ++i) {
    unsigned char b = static_cast<unsigned char>(s[s.size() - i]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    return need > i ? i : 0;
  }
  return 0;
}

// The longest end of s that begins one of the stop strings (it may complete later).
size_t stop_prefix_tail(std::string_view s, const std::vector<std::string>& stops) {
  size_t longest = 0;
  for (const auto& stop : stops)
    for (size_t n = std::min(stop.size() - 1, s.size()); n > longest; --n)
      if (s.substr(s.size() - n) == std::string_view(stop).substr(0, n)) {
        longest = n;
        break;
      }
  return longest;
}

}  // namespace

void GenerationOptions::check() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(max_new_tokens > 0,
       "max-new-tokens must be positive, not " + std::to_string(max_new_tokens));
  need(num_samples > 0, "num-samples must be positive, not " + std::to_string(num_samples));
  need(batch_size > 0, "batch-size must be positive, not " + std::to_string(batch_size));
  for (const auto& s : stop) need(!s.empty(), "a stop string must not be empty");
  sampling.check();
}

struct Generator::Sequence {
  size_t index = 0;             // into generate's result
  std::vector<int32_t> tokens;  // the prompt (cut to the context), then what was generated
  std::string prompt_bytes;     // the prompt's text as the tokenizer decodes it
  std::string bytes;            // the continuation's bytes so far
  size_t emitted = 0;           // bytes of it passed on
  TokenSampler sampler;
  Generation result;
  bool done = false;
};

Generator::Generator(const nn::Gpt& model, const data::LmTokenizer& tokenizer,
                     GenerationOptions options)
    : Generator(model, tokenizer, std::move(options),
                std::make_shared<const nn::PackedGpt>(model.pack(options.compute_type))) {}

Generator::Generator(const nn::Gpt& model, const data::LmTokenizer& tokenizer,
                     GenerationOptions options, std::shared_ptr<const nn::PackedGpt> packed)
    : model_(model),
      tokenizer_(tokenizer),
      options_(std::move(options)),
      packed_(std::move(packed)) {
  options_.check();
}

std::vector<Generation> Generator::generate(const std::vector<std::string>& prompts,
                                            const TextCallback& on_text,
                                            const std::vector<SampleStream>& streams) const {
  const nn::GptConfig& c = model_.config();
  size_t samples = size_t(options_.num_samples);
  if (!streams.empty() && streams.size() != prompts.size())
    throw std::invalid_argument("generate: " + std::to_string(streams.size()) +
                                " sample streams for " + std::to_string(prompts.size()) +
                                " prompts");
  std::vector<Generation> results(prompts.size() * samples);
  std::vector<Sequence> batch;
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::vector<int32_t> ids;
    try {
      ids = tokenizer_.encode(prompts[p]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("prompt " + std::to_string(p + 1) + ": " + e.what());
    }
    if (tokenizer_.add_bos()) ids.insert(ids.begin(), tokenizer_.bos_id());
    if (ids.empty()) {
      // GPT-2's convention: an empty prompt starts from the end-of-text token.
      if (tokenizer_.eos_id() < 0)
        throw std::invalid_argument("prompt " + std::to_string(p + 1) +
                                    " is empty and the tokenizer has no token to start from");
      ids.push_back(tokenizer_.eos_id());
    }
    bool cut = int64_t(ids.size()) > c.context_length - 1 && c.context_length > 1;
    if (cut) {  // keep the end, and the bos the model always saw first
      size_t keep = size_t(c.context_length - 1), head = tokenizer_.add_bos() ? 1 : 0;
      ids.erase(ids.begin() + std::ptrdiff_t(head), ids.end() - std::ptrdiff_t(keep - head));
    }
    SampleStream stream{options_.sampling.seed, p * samples};
    if (!streams.empty()) stream = streams[p];
    SamplingOptions sampling = options_.sampling;
    sampling.seed = stream.seed;
    for (size_t j = 0; j < samples; ++j) {
      size_t index = p * samples + j;
      Sequence s{index, ids,  tokenizer_.decode_bytes(ids),
                 "",    0,    TokenSampler(sampling, stream.first_sequence + j),
                 {},    false};
      s.result.prompt_tokens = int64_t(ids.size());
      s.result.prompt_cut = cut;
      batch.push_back(std::move(s));
      if (int64_t(batch.size()) == options_.batch_size) {
        run_batch(batch, on_text);
        for (auto& done : batch) results[done.index] = std::move(done.result);
        batch.clear();
      }
    }
  }
  if (!batch.empty()) {
    run_batch(batch, on_text);
    for (auto& done : batch) results[done.index] = std::move(done.result);
  }
  return results;
}

// Passes on what of the continuation is final: whole characters that cannot be the start of a
// stop string. final: everything (the sequence has ended).
void Generator::emit(Sequence& s, bool final, const TextCallback& on_text) const {
  std::string_view bytes = s.bytes;
  size_t end = bytes.size();
  if (!final) {
    end -= incomplete_utf8_tail(bytes);
    end -= stop_prefix_tail(bytes.substr(0, end), options_.stop);
  }
  if (end <= s.emitted) return;
  std::string piece = data::sanitize_utf8(bytes.substr(s.emitted, end - s.emitted));
  s.emitted = end;
  s.result.text += piece;
  if (on_text) on_text(s.index, piece);
}

void Generator::run_batch(std::vector<Sequence>& batch, const TextCallback& on_text) const {
  const nn::GptConfig& c = model_.config();
  int64_t rows = int64_t(batch.size()), longest = 0;
  for (const auto& s : batch) longest = std::max(longest, int64_t(s.tokens.size()));
  int64_t capacity = std::min(c.context_length, longest + options_.max_new_tokens);
  nn::KvCache cache = model_.new_cache(rows, capacity);

  // Prefill: the prompts right-padded to the longest.
  std::vector<int32_t> ids(size_t(rows * longest), 0);
  std::vector<int64_t> lengths;
  for (int64_t r = 0; r < rows; ++r) {
    const auto& t = batch[size_t(r)].tokens;
    std::copy(t.begin(), t.end(), ids.begin() + r * longest);
    lengths.push_back(int64_t(t.size()));
  }
  Tensor logits = model_.step(Tensor::from_vector(ids, {rows, longest}), lengths, cache, *packed_);

  std::vector<size_t> active(batch.size());  // cache row -> sequence in batch
  for (size_t r = 0; r < active.size(); ++r) active[r] = r;
  int64_t vocab = c.vocab_size;
  while (!active.empty()) {
    Tensor host = logits.to(Device::cpu);  // [rows, V]
    std::vector<int32_t> kept;
    for (size_t r = 0; r < active.size(); ++r) {
      Sequence& s = batch[active[r]];
      std::span<float> row(host.data<float>() + int64_t(r) * vocab, size_t(vocab));
      int32_t token = s.sampler.next(row, s.tokens);
      if (c.ends_generation(token)) {
        s.done = true, s.result.finish_reason = "eos";
      } else {
        s.tokens.push_back(token);
        ++s.result.new_tokens;
        std::string full = tokenizer_.decode_bytes(s.tokens);
        s.bytes = full.starts_with(s.prompt_bytes)
                      ? full.substr(s.prompt_bytes.size())
                      : tokenizer_.decode_bytes(std::vector<int32_t>(
                            s.tokens.end() - s.result.new_tokens, s.tokens.end()));
        size_t stop_at = std::string::npos;
        for (const auto& stop : options_.stop) stop_at = std::min(stop_at, s.bytes.find(stop));
        if (stop_at != std::string::npos) {
          s.bytes.resize(stop_at);
          s.done = true, s.result.finish_reason = "stop";
        } else if (s.result.new_tokens == options_.max_new_tokens) {
          s.done = true, s.result.finish_reason = "length";
        }
      }
      emit(s, s.done, on_text);
      if (!s.done) kept.push_back(int32_t(r));
    }
    if (kept.empty()) break;
    if (kept.size() < active.size()) {
      nn::keep_cache_rows(cache, kept);
      std::vector<size_t> still;
      for (int32_t r : kept) still.push_back(active[size_t(r)]);
      active = std::move(still);
    }
    // A full row forgets its older half (llama.cpp's context shift): its last tokens are run
    // again from position 0, then it continues.
    for (size_t r = 0; r < active.size(); ++r) {
      if (cache.lengths[r] < capacity) continue;
      const auto& t = batch[active[r]].tokens;
      int64_t keep = std::max<int64_t>(capacity / 2, 1) - 1;  // before the newest token
      cache.lengths[r] = 0;
      if (keep == 0) continue;
      nn::KvCache refill = model_.new_cache(1, capacity);
      std::vector<int32_t> last(t.end() - 1 - keep, t.end() - 1);
      model_.step(Tensor::from_vector(last, {1, keep}), {keep}, refill, *packed_);
      nn::copy_cache_row(refill, 0, cache, int64_t(r));
    }
    std::vector<int32_t> next;
    for (size_t i : active) next.push_back(batch[i].tokens.back());
    int64_t m = int64_t(next.size());
    logits = model_.step(Tensor::from_vector(next, {m, 1}), std::vector<int64_t>(size_t(m), 1),
                         cache, *packed_);
  }
}

}  // namespace qkv::decode
