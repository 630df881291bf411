#include "serve/jobs.h"

namespace qkv::serve {

void TextStream::add(size_t sequence, std::string text) {
  std::lock_guard lock(mutex_);
  pieces_.push_back({sequence, std::move(text)});
  added_.notify_all();
}

std::vector<TextStream::Piece> TextStream::take(std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  added_.wait_for(lock, wait, [&] { return !pieces_.empty(); });
  std::vector<Piece> out(std::make_move_iterator(pieces_.begin()),
                         std::make_move_iterator(pieces_.end()));
  pieces_.clear();
  return out;
}

}  // namespace qkv::serve
