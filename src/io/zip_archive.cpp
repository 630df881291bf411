#include "io/zip_archive.h"

#include <zip.h>

#include <stdexcept>

namespace qkv {

namespace {

std::string libzip_message(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

}  // namespace

void ZipArchive::fail(const std::string& what) const {
  throw std::runtime_error(path_ + ": not a valid ZIP archive: " + what);
}

ZipArchive::ZipArchive(std::string path) : path_(std::move(path)), zip_(nullptr, zip_discard) {
  int code = 0;
  // ZIP_CHECKCONS: each entry's local header must agree with the central directory.
  zip_t* z = zip_open(path_.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!z) {
    if (code == ZIP_ER_OPEN || code == ZIP_ER_NOENT)
      throw std::runtime_error(path_ + ": cannot open for reading");
    fail(code == ZIP_ER_NOZIP ? "no readable end record or central directory (truncated?)"
                              : "libzip: " + libzip_message(code));
  }
  zip_.reset(z);
}

std::vector<std::string> ZipArchive::names() const {
  std::vector<std::string> out;
  zip_int64_t count = zip_get_num_entries(zip_.get(), 0);
  for (zip_int64_t i = 0; i < count; ++i)
    if (const char* name = zip_get_name(zip_.get(), zip_uint64_t(i), ZIP_FL_ENC_RAW))
      out.emplace_back(name);
  return out;
}

bool ZipArchive::has(const std::string& name) const {
  return zip_name_locate(zip_.get(), name.c_str(), ZIP_FL_ENC_RAW) >= 0;
}

std::string ZipArchive::read(const std::string& name) const {
  zip_int64_t index = zip_name_locate(zip_.get(), name.c_str(), ZIP_FL_ENC_RAW);
  if (index < 0) fail("no entry '" + name + "'");
  zip_stat_t st;
  if (zip_stat_index(zip_.get(), zip_uint64_t(index), 0, &st) != 0)
    fail("entry '" + name + "': libzip: " + zip_strerror(zip_.get()));
  if (st.comp_method != ZIP_CM_STORE)
    throw std::runtime_error(path_ + ": entry '" + name + "' is compressed (method " +
                             std::to_string(st.comp_method) +
                             "); torch.save writes entries uncompressed and qkv reads only those");
  std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(
      zip_fopen_index(zip_.get(), zip_uint64_t(index), 0), zip_fclose);
  if (!file) fail("entry '" + name + "': libzip: " + zip_strerror(zip_.get()));
  std::string out(st.size, '\0');
  // Reading up to the end (the extra byte) is what makes libzip compare the CRC-32.
  char past_end;
  if (zip_fread(file.get(), out.data(), st.size) != zip_int64_t(st.size) ||
      zip_fread(file.get(), &past_end, 1) != 0) {
    if (zip_error_code_zip(zip_file_get_error(file.get())) == ZIP_ER_CRC)
      fail("entry '" + name + "' fails its CRC-32 check (corrupt file)");
    fail("entry '" + name + "' cannot be read (" + zip_file_strerror(file.get()) + "; truncated?)");
  }
  return out;
}

}  // namespace qkv
