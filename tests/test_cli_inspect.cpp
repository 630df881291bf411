// `qkv inspect`, run as the built binary: the listing of a good file, and a non-zero exit with a
// single "qkv: ..." line on stderr for a malformed or missing file.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "io/safetensors.h"
#include "support/torch_ref.h"

#ifndef QKV_BINARY
#error "QKV_BINARY must name the built qkv executable"
#endif

namespace qkv::test {
namespace {

struct QkvRun {
  int exit_code;
  std::string out, err;
};

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

QkvRun run_qkv(const std::string& args) {
  std::string out = temp_path("qkv.stdout"), err = temp_path("qkv.stderr");
  std::string command = QKV_BINARY " " + args + " >" + out + " 2>" + err;
  int status = std::system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(out), read_text(err)};
}

void expect_one_line_error(const QkvRun& r, const std::string& reason) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("qkv: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(reason), std::string::npos) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
}

TEST(CliInspect, ListsTensorsAndMetadata) {
  std::string path = temp_path("inspect.safetensors");
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 2, 3}, {3});
  save_safetensors(path,
                   {{"encoder.w", Tensor::zeros({2, 3})},
                    {"ids", ids},
                    {"half", Tensor::zeros({4, 1}).cast(DType::bf16)},
                    {"scalar", Tensor::zeros({})}},
                   {{"format", "pt"}, {"step", "100"}});
  QkvRun r = run_qkv("inspect " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "encoder.w\tF32\t[2, 3]\t24\n"
            "ids\tI32\t[3]\t12\n"
            "half\tBF16\t[4, 1]\t8\n"
            "scalar\tF32\t[]\t4\n"
            "metadata\tformat\tpt\n"
            "metadata\tstep\t100\n"
            "4 tensors, 48 bytes\n");
}

TEST(CliInspect, FailsWithOneLineOnAMalformedFile) {
  std::string path = temp_path("malformed.safetensors");
  std::string header = R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})";
  std::string bytes(8, '\0');
  bytes[0] = char(header.size());
  std::ofstream(path, std::ios::binary) << bytes << header << std::string(8, '\0');
  expect_one_line_error(run_qkv("inspect " + path),
                        path + ": not a valid safetensors file: tensor \"w\" ends at byte 16");

  std::ofstream(path, std::ios::binary) << "short";
  expect_one_line_error(run_qkv("inspect " + path), "shorter than the 8-byte header length");
}

TEST(CliInspect, FailsWithOneLineOnAMissingFile) {
  std::string path = temp_path("no-such-file.safetensors");
  expect_one_line_error(run_qkv("inspect " + path), path + ": cannot open for reading");
}

}  // namespace
}  // namespace qkv::test
