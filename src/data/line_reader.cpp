#include "data/line_reader.h"

#include <fcntl.h>
#include <lzma.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "data/utf8.h"

namespace qkv::data {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    if (path == "-") {
      fd_ = STDIN_FILENO;
      return;
    }
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  }
  ~FileSource() override {
    if (fd_ != STDIN_FILENO) ::close(fd_);
  }
  size_t read(char* out, size_t capacity) override {
    for (;;) {
      ssize_t n = ::read(fd_, out, capacity);
      if (n >= 0) return size_t(n);
      if (errno != EINTR)
        throw std::runtime_error(path_ + ": read failed: " + std::strerror(errno));
    }
  }

 private:
  std::string path_;
  int fd_;
};

std::string lzma_error_text(lzma_ret r) {
  switch (r) {
    case LZMA_FORMAT_ERROR:
      return "not in .xz format";
    case LZMA_DATA_ERROR:
      return "corrupt compressed data";
    case LZMA_BUF_ERROR:
      return "compressed data is truncated";
    case LZMA_OPTIONS_ERROR:
      return "unsupported .xz options";
    case LZMA_MEM_ERROR:
      return "out of memory";
    default:
      return "liblzma error " + std::to_string(int(r));
  }
}

// Decompresses one or more concatenated .xz streams.
class XzSource : public ByteSource {
 public:
  explicit XzSource(const std::string& path) : path_(path), file_(path), input_(1 << 16) {
    lzma_ret r = lzma_stream_decoder(&stream_, UINT64_MAX, LZMA_CONCATENATED);
    if (r != LZMA_OK)
      throw std::runtime_error(path + ": cannot start xz decoder: " + lzma_error_text(r));
  }
  ~XzSource() override { lzma_end(&stream_); }
  size_t read(char* out, size_t capacity) override {
    if (finished_) return 0;
    stream_.next_out = reinterpret_cast<uint8_t*>(out);
    stream_.avail_out = capacity;
    while (stream_.avail_out == capacity) {
      if (stream_.avail_in == 0 && !input_ended_) {
        stream_.avail_in = file_.read(input_.data(), input_.size());
        stream_.next_in = reinterpret_cast<const uint8_t*>(input_.data());
        input_ended_ = stream_.avail_in == 0;
      }
      lzma_ret r = lzma_code(&stream_, input_ended_ ? LZMA_FINISH : LZMA_RUN);
      if (r == LZMA_STREAM_END) {
        finished_ = true;
        break;
      }
      if (r == LZMA_BUF_ERROR && stream_.total_out == 0)  // too short for the .xz header
        throw std::runtime_error(path_ + ": invalid .xz file: not in .xz format, or truncated");
      if (r != LZMA_OK)
        throw std::runtime_error(path_ + ": invalid .xz file: " + lzma_error_text(r));
    }
    return capacity - stream_.avail_out;
  }

 private:
  std::string path_;
  FileSource file_;
  std::vector<char> input_;
  lzma_stream stream_ = LZMA_STREAM_INIT;
  bool input_ended_ = false, finished_ = false;
};

}  // namespace

std::unique_ptr<ByteSource> open_byte_source(const std::string& path) {
  if (ends_with(path, ".xz")) return std::make_unique<XzSource>(path);
  return std::make_unique<FileSource>(path);
}

LineReader::LineReader(const std::string& path)
    : path_(path == "-" ? "<stdin>" : path), source_(open_byte_source(path)), buffer_(1 << 16) {}

bool LineReader::next(std::string& line) {
  line.clear();
  bool got_bytes = false;
  for (;;) {
    if (begin_ == end_) {
      begin_ = 0;
      end_ = source_->read(buffer_.data(), buffer_.size());
      if (end_ == 0) break;
    }
    got_bytes = true;
    const char* start = buffer_.data() + begin_;
    const char* newline = static_cast<const char*>(std::memchr(start, '\n', end_ - begin_));
    if (newline) {
      line.append(start, newline);
      begin_ += size_t(newline - start) + 1;
      break;
    }
    line.append(start, end_ - begin_);
    begin_ = end_;
  }
  if (!got_bytes) return false;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  ++line_number_;
  return true;
}

std::vector<std::string> read_input_lines(const std::string& path) {
  LineReader reader(path);
  std::vector<std::string> lines;
  std::string line;
  while (reader.next(line)) lines.push_back(sanitize_utf8(line));
  return lines;
}

}  // namespace qkv::data
