// safetensors: qkv's own round trip, interop with PyTorch both ways (through
// tests/python/safetensors_roundtrip.py), and malformed files, each of which must give a one-line
// std::runtime_error naming the file and the problem (the suite also runs under ASan/UBSan, which
// catch any out-of-bounds read or overflow on the way).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/safetensors.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

Tensor f32_tensor(const std::vector<float>& values, const Shape& shape) {
  return Tensor::from_vector(values, shape);
}

Tensor u8_tensor(const std::vector<uint8_t>& values, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::u8);
  std::memcpy(t.raw(), values.data(), values.size());
  return t;
}

std::vector<uint16_t> bf16_bits(const Tensor& t) {
  const bf16* p = t.data<bf16>();
  std::vector<uint16_t> bits;
  for (int64_t i = 0; i < t.numel(); ++i) bits.push_back(p[i].bits);
  return bits;
}

template <class T>
std::vector<T> values_of(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

void expect_same_tensor(const Tensor& got, const Tensor& want, const std::string& name) {
  ASSERT_EQ(got.dtype(), want.dtype()) << name;
  ASSERT_EQ(got.shape(), want.shape()) << name;
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << name << ": bytes differ";
}

// Runs tests/python/safetensors_roundtrip.py with `args` under $QKV_PYTHON or /usr/bin/python3;
// returns its exit status.
int run_roundtrip_script(const std::string& args) {
  const char* env = std::getenv("QKV_PYTHON");
  std::string python = env ? env : "/usr/bin/python3";
  std::string cmd =
      python + " " + std::string(QKV_TEST_PYTHON_DIR) + "/safetensors_roundtrip.py " + args;
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The tensors that safetensors_roundtrip.py's KNOWN_FROM_QKV describes.
NamedTensors known_tensors() {
  return {{"f32", f32_tensor({0.5f, -1.25f, 3.f, 1e-3f, -7.5f, 100.f}, {2, 3})},
          {"i32", Tensor::from_vector(std::vector<int32_t>{-3, 0, 7, 1 << 20}, {4})},
          {"bf16", f32_tensor({1.5f, -0.0078125f, 256.f}, {3}).cast(DType::bf16)},
          {"u8", u8_tensor({0, 1, 100, 127}, {2, 2})},
          {"scalar", f32_tensor({2.5f}, {})},
          {"empty", Tensor::zeros({0, 4})}};
}

TEST(Safetensors, RoundTripKeepsDtypesShapesBytesAndMetadata) {
  std::string path = temp_path("roundtrip.safetensors");
  NamedTensors tensors = known_tensors();
  // A view saves only its own rows.
  tensors.emplace_back("rows", f32_tensor({1, 2, 3, 4, 5, 6}, {3, 2}).slice_rows(1, 3));
  Metadata meta{{"format", "pt"}, {"note", "line one\nline \"two\""}, {"empty", ""}};
  save_safetensors(path, tensors, meta);

  Metadata got_meta;
  NamedTensors got = load_safetensors(path, &got_meta);
  EXPECT_EQ(got_meta, meta);
  ASSERT_EQ(got.size(), tensors.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first, tensors[i].first) << "tensors come back in the order saved";
    expect_same_tensor(got[i].second, tensors[i].second, tensors[i].first);
  }
  EXPECT_EQ(got.back().second.to_vector(), (std::vector<float>{3, 4, 5, 6}));

  SafetensorsHeader h = read_safetensors_header(path);
  EXPECT_EQ(h.header_bytes % 8, 0u) << "the data section starts 8-byte aligned";
  EXPECT_EQ(h.data_bytes, 24u + 16 + 6 + 4 + 4 + 0 + 16);
  EXPECT_EQ(h.metadata, meta);
}

TEST(Safetensors, SaveRejectsDuplicateReservedAndUndefinedTensors) {
  std::string path = temp_path("bad-save.safetensors");
  Tensor t = Tensor::zeros({2});
  EXPECT_THROW(save_safetensors(path, {{"a", t}, {"a", t}}), std::invalid_argument);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", t}}), std::invalid_argument);
  EXPECT_THROW(save_safetensors(path, {{"a", Tensor()}}), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(path)) << "a failed save leaves no file";
}

TEST(Safetensors, PyTorchReadsQkvFilesAndQkvReadsTheAnswer) {
  std::string in = temp_path("to-python.safetensors"), out = temp_path("from-python.safetensors");
  save_safetensors(in, known_tensors(), {{"format", "pt"}, {"origin", "qkv"}});
  ASSERT_EQ(run_roundtrip_script("double " + in + " " + out), 0)
      << "PyTorch did not read qkv's file as written (see its message above)";

  Metadata meta;
  NamedTensors got = load_safetensors(out, &meta);
  EXPECT_EQ(meta, (Metadata{{"format", "pt"}, {"origin", "qkv"}, {"python", "doubled"}}));
  std::map<std::string, Tensor> by_name(got.begin(), got.end());
  ASSERT_EQ(by_name.size(), 6u);
  EXPECT_EQ(values_of<float>(by_name["f32"]), (std::vector<float>{1, -2.5, 6, 2e-3f, -15, 200}));
  EXPECT_EQ(by_name["f32"].shape(), (Shape{2, 3}));
  EXPECT_EQ(values_of<int32_t>(by_name["i32"]), (std::vector<int32_t>{-6, 0, 14, 1 << 21}));
  EXPECT_EQ(by_name["bf16"].to_vector(), (std::vector<float>{3, -0.015625f, 512}));
  EXPECT_EQ(by_name["bf16"].dtype(), DType::bf16);
  EXPECT_EQ(values_of<uint8_t>(by_name["u8"]), (std::vector<uint8_t>{0, 2, 200, 254}));
  EXPECT_EQ(by_name["scalar"].shape(), Shape{});
  EXPECT_EQ(by_name["scalar"].item(), 5.f);
  EXPECT_EQ(by_name["empty"].shape(), (Shape{0, 4}));
}

TEST(Safetensors, QkvReadsFilesWrittenByPyTorch) {
  std::string path = temp_path("python-written.safetensors");
  ASSERT_EQ(run_roundtrip_script("write " + path), 0);
  Metadata meta;
  NamedTensors got = load_safetensors(path, &meta);
  EXPECT_EQ(meta.at("format"), "pt");
  EXPECT_EQ(meta.at("written_by").rfind("torch ", 0), 0u);
  std::map<std::string, Tensor> t(got.begin(), got.end());
  ASSERT_EQ(t.size(), 8u);
  EXPECT_EQ(t["w.f32"].shape(), (Shape{2, 3}));
  EXPECT_EQ(t["w.f32"].to_vector(), (std::vector<float>{-1, -0.75, -0.5, -0.25, 0, 0.25}));
  // F16 1.0, -2.0, 0.5 and torch's bfloat16 of 1.0, -3.5, 0.1, 1e30, as bit patterns.
  ASSERT_EQ(t["w.f16"].dtype(), DType::f16);
  const uint16_t* f16 = static_cast<const uint16_t*>(t["w.f16"].raw());
  EXPECT_EQ(std::vector<uint16_t>(f16, f16 + 3), (std::vector<uint16_t>{0x3c00, 0xc000, 0x3800}));
  EXPECT_EQ(t["w.bf16"].shape(), (Shape{2, 2}));
  EXPECT_EQ(bf16_bits(t["w.bf16"]), (std::vector<uint16_t>{0x3f80, 0xc060, 0x3dcd, 0x714a}));
  EXPECT_EQ(values_of<int32_t>(t["ids.i32"]), (std::vector<int32_t>{-2, 0, 7, 2147483647}));
  EXPECT_EQ(values_of<int64_t>(t["ids.i64"]), (std::vector<int64_t>{-(int64_t(1) << 40), 5}));
  EXPECT_EQ(values_of<uint8_t>(t["mask.u8"]), (std::vector<uint8_t>{0, 128, 255}));
  EXPECT_EQ(t["scalar"].shape(), Shape{});
  EXPECT_EQ(t["scalar"].item(), -4.f);
  EXPECT_EQ(t["empty"].shape(), (Shape{0, 3}));
}

// ---------------------------------------------------------------------------------------------
// Malformed files.

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((v >> (8 * i)) & 0xff);
  return s;
}

// A file with `header` as its JSON and `data_bytes` zero bytes of data.
std::string file_with_header(const std::string& name, const std::string& header,
                             size_t data_bytes) {
  std::string path = temp_path(name);
  write_bytes(path, u64_le(header.size()) + header + std::string(data_bytes, '\0'));
  return path;
}

// Both readers must throw a one-line std::runtime_error naming the file and containing `reason`.
void expect_rejected(const std::string& path, const std::string& reason) {
  for (bool header_only : {true, false}) {
    SCOPED_TRACE(path + (header_only ? " (header)" : " (load)"));
    try {
      if (header_only)
        read_safetensors_header(path);
      else
        load_safetensors(path);
      ADD_FAILURE() << "accepted a malformed file; expected: " << reason;
    } catch (const std::runtime_error& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(reason), std::string::npos) << what;
      EXPECT_EQ(what.rfind(path, 0), 0u) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "message is not one line: " << what;
    }
  }
}

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype": ")" + dtype + R"(", "shape": )" + shape + R"(, "data_offsets": )" + offsets +
         "}";
}

TEST(SafetensorsMalformed, TooShortOrMissing) {
  std::string empty = temp_path("zero-bytes.st");
  write_bytes(empty, "");
  expect_rejected(empty, "shorter than the 8-byte header length (0 bytes)");
  std::string five = temp_path("five-bytes.st");
  write_bytes(five, std::string("\x10\0\0\0\0", 5));
  expect_rejected(five, "shorter than the 8-byte header length (5 bytes)");
  expect_rejected(temp_path("does-not-exist.st"), "cannot open for reading");
  std::string dir = temp_path("a-folder.st");
  std::filesystem::create_directories(dir);
  expect_rejected(dir, "not a regular file");
}

TEST(SafetensorsMalformed, HeaderLengthLargerThanTheFile) {
  std::string path = temp_path("long-header.st");
  write_bytes(path, u64_le(1000) + "{}");
  expect_rejected(path, "header length 1000 is larger than the file (10 bytes)");
  write_bytes(path, u64_le(~uint64_t(0)) + "{}");
  expect_rejected(path, "header length 18446744073709551615 is larger than the file");
}

TEST(SafetensorsMalformed, HeaderNotAJsonObject) {
  expect_rejected(file_with_header("not-json.st", "{\"a\": \n", 0), "header is not JSON");
  expect_rejected(file_with_header("binary.st", std::string("\xff\xfe\0\1", 4), 0),
                  "header is not JSON");
  expect_rejected(file_with_header("array.st", "[1, 2]", 0),
                  "header is not a JSON object (found array)");
  expect_rejected(file_with_header("entry-not-object.st", R"({"w": 3})", 0),
                  "tensor \"w\" is not an object");
  expect_rejected(
      file_with_header("no-dtype.st", R"({"w": {"shape": [], "data_offsets": [0, 4]}})", 4),
      "tensor \"w\" has no \"dtype\"");
}

TEST(SafetensorsMalformed, UnknownDtype) {
  expect_rejected(file_with_header("dtype.st", "{\"w\": " + entry("F33", "[1]", "[0, 4]") + "}", 4),
                  "tensor \"w\": unsupported dtype \"F33\"");
  // Control characters in names and dtypes are escaped, keeping the message on one line.
  expect_rejected(file_with_header("dtype-newline.st",
                                   "{\"a\\nb\": " + entry("F\\n32", "[1]", "[0, 4]") + "}", 4),
                  "tensor \"a\\nb\": unsupported dtype \"F\\n32\"");
}

TEST(SafetensorsMalformed, HeaderThatLiesAboutSizes) {
  expect_rejected(
      file_with_header("lies.st", "{\"w\": " + entry("F32", "[2, 2]", "[0, 12]") + "}", 12),
      "data_offsets [0,12] span 12 bytes, but shape [2, 2] of F32 needs 16");
  expect_rejected(
      file_with_header("backwards.st", "{\"w\": " + entry("U8", "[4]", "[8, 4]") + "}", 8),
      "end before they begin");
  expect_rejected(
      file_with_header("one-offset.st", "{\"w\": " + entry("U8", "[4]", "[4]") + "}", 4),
      "data_offsets is not [begin, end]");
  expect_rejected(
      file_with_header("neg-offset.st", "{\"w\": " + entry("U8", "[4]", "[-4, 0]") + "}", 4),
      "data_offsets is not [begin, end]");
}

TEST(SafetensorsMalformed, OverlapsHolesAndOffsetsPastTheEnd) {
  std::string a = entry("F32", "[2]", "[0, 8]");
  expect_rejected(
      file_with_header("overlap.st",
                       "{\"a\": " + a + ", \"b\": " + entry("F32", "[2]", "[4, 12]") + "}", 12),
      "tensor \"b\" starts at byte 4 of the data section, expected 8 (overlaps");
  expect_rejected(file_with_header("same.st", "{\"a\": " + a + ", \"b\": " + a + "}", 16),
                  "expected 8 (overlaps the tensor before it)");
  expect_rejected(
      file_with_header("hole.st",
                       "{\"a\": " + a + ", \"b\": " + entry("F32", "[2]", "[12, 20]") + "}", 20),
      "tensor \"b\" starts at byte 12 of the data section, expected 8 (leaves a hole)");
  expect_rejected(
      file_with_header("first-hole.st", "{\"a\": " + entry("U8", "[4]", "[4, 8]") + "}", 8),
      "expected 0 (leaves a hole)");
  expect_rejected(
      file_with_header("past-end.st", "{\"a\": " + entry("F32", "[4]", "[0, 16]") + "}", 8),
      "tensor \"a\" ends at byte 16 of a data section of 8 bytes (truncated file?)");
  expect_rejected(file_with_header("trailing.st", "{\"a\": " + a + "}", 12),
                  "4 bytes follow the last tensor");
  // Offsets near 2^64: no overflow, no giant allocation.
  expect_rejected(
      file_with_header(
          "huge-offsets.st",
          "{\"a\": " + entry("U8", "[0]", "[18446744073709551615, 18446744073709551615]") + "}", 0),
      "leaves a hole");
  expect_rejected(
      file_with_header(
          "huge-tensor.st",
          "{\"a\": " + entry("U8", "[4611686018427387904]", "[0, 4611686018427387904]") + "}", 8),
      "ends at byte 4611686018427387904 of a data section of 8 bytes");
}

TEST(SafetensorsMalformed, TruncatedFile) {
  std::string path = temp_path("truncated.st");
  save_safetensors(path, {{"a", Tensor::zeros({4})}, {"b", Tensor::zeros({3, 5})}});
  uint64_t header_bytes = read_safetensors_header(path).header_bytes;
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 7);
  expect_rejected(path, "tensor \"b\" ends at byte 76 of a data section of 69 bytes");
  std::filesystem::resize_file(path, 8 + header_bytes - 3);
  expect_rejected(path,
                  "header length " + std::to_string(header_bytes) + " is larger than the file");
}

TEST(SafetensorsMalformed, BadDimensions) {
  expect_rejected(
      file_with_header("neg-dim.st", "{\"w\": " + entry("F32", "[-2, 2]", "[0, 16]") + "}", 16),
      "negative dimension -2 in shape [-2,2]");
  expect_rejected(
      file_with_header("float-dim.st", "{\"w\": " + entry("F32", "[2.5]", "[0, 8]") + "}", 8),
      "dimension 2.5 is not a non-negative integer");
  expect_rejected(
      file_with_header("str-shape.st", "{\"w\": " + entry("F32", "\"2\"", "[0, 8]") + "}", 8),
      "shape is not a list");
  // numel * dtype_size would overflow uint64 (2^32 * 2^32 * 16 * 4 bytes).
  expect_rejected(file_with_header(
                      "overflow.st",
                      "{\"w\": " + entry("F32", "[4294967296, 4294967296, 16]", "[0, 0]") + "}", 0),
                  "shape [4294967296,4294967296,16] is too large");
  expect_rejected(
      file_with_header("overflow-zero.st",
                       "{\"w\": " + entry("F32", "[0, 9223372036854775808]", "[0, 0]") + "}", 0),
      "is too large");
}

TEST(SafetensorsMalformed, BadMetadata) {
  expect_rejected(file_with_header("meta-int.st", R"({"__metadata__": {"epoch": 3}})", 0),
                  "__metadata__ value of \"epoch\" is not a string (found number)");
  expect_rejected(file_with_header("meta-nested.st", R"({"__metadata__": {"a": {"b": "c"}}})", 0),
                  "__metadata__ value of \"a\" is not a string (found object)");
  expect_rejected(file_with_header("meta-list.st", R"({"__metadata__": ["a"]})", 0),
                  "__metadata__ is not an object");
}

}  // namespace
}  // namespace qkv::test
