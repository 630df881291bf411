// torch.save checkpoints (tests/python/torch_checkpoints.py writes them with PyTorch): both
// formats and ZIP64 give PyTorch's tensors bit for bit (views, zero strides, every dtype qkv
// reads); a pickle that calls anything else is refused without running it; damaged files give
// a std::runtime_error naming the file (the suite also runs under ASan/UBSan, which would catch
// an out-of-bounds read on the way).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "io/atomic_file.h"
#include "io/pickle.h"
#include "io/torch_checkpoint.h"
#include "support/data_files.h"
#include "support/python_script.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

class TorchCheckpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir("torch_checkpoint");
    run_python_script("torch_checkpoints.py", "make " + dir_->file(""));
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string file(const std::string& name) { return dir_->file(name); }

  static void expect_failure(const std::string& name, const std::vector<std::string>& parts) {
    std::vector<std::string> with_path = parts;
    with_path.push_back(name);
    expect_error<std::runtime_error>([&] { load_torch_checkpoint(file(name)); }, with_path);
  }

  static ScratchDir* dir_;
};
ScratchDir* TorchCheckpoint::dir_ = nullptr;

TEST_F(TorchCheckpoint, GivesTorchsTensorsBitForBit) {
  Metadata meta;
  NamedTensors want = load_safetensors(file("expected.safetensors"), &meta);
  std::map<std::string, Tensor> by_name(want.begin(), want.end());
  for (const char* format : {"zip.pt", "legacy.pt", "zip64.pt"}) {
    SCOPED_TRACE(format);
    NamedTensors got = load_torch_checkpoint(file(format));
    std::string order;
    for (const auto& [name, t] : got) {
      order += (order.empty() ? "" : ",") + name;
      ASSERT_TRUE(by_name.count(name)) << name;
      const Tensor& w = by_name[name];
      EXPECT_EQ(t.dtype(), w.dtype()) << name;
      EXPECT_EQ(t.shape(), w.shape()) << name;
      EXPECT_EQ(t.nbytes(), w.nbytes()) << name;
      if (t.nbytes() == w.nbytes()) {
        EXPECT_EQ(std::memcmp(t.raw(), w.raw(), t.nbytes()), 0) << name;
      }
    }
    EXPECT_EQ(order, meta.at("order"));  // the dict's order
  }
}

TEST_F(TorchCheckpoint, IsToldFromSafetensorsByItsContent) {
  EXPECT_EQ(sniff_checkpoint_format(file("zip.pt")), CheckpointFormat::torch);
  EXPECT_EQ(sniff_checkpoint_format(file("legacy.pt")), CheckpointFormat::torch);
  EXPECT_EQ(sniff_checkpoint_format(file("expected.safetensors")), CheckpointFormat::safetensors);
  write_bytes(file("text.pt"), "{\"not\": \"weights\"}");
  EXPECT_EQ(sniff_checkpoint_format(file("text.pt")), CheckpointFormat::unknown);
  EXPECT_EQ(sniff_checkpoint_format(file("missing.pt")), CheckpointFormat::unknown);
}

TEST_F(TorchCheckpoint, RunsNoCodeFromTheFile) {
  expect_failure("calls_system.pt", {"calls posix.system", "does not run"});
  EXPECT_FALSE(fs::exists(file("pwned")));
}

// A training checkpoint's state dict is its one dict of tensors, or the entry named.
TEST_F(TorchCheckpoint, FindsTheStateDictInACheckpointOfSeveralParts) {
  std::string picked = "unset";
  NamedTensors t = load_torch_checkpoint(file("training.pt"), "", &picked);
  EXPECT_EQ(picked, "model");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].first, "w");
  EXPECT_EQ(t[0].second.to_vector(), (std::vector<float>{1, 1}));
  load_torch_checkpoint(file("zip.pt"), "", &picked);
  EXPECT_EQ(picked, "");

  expect_failure("two_models.pt", {"several state dicts ('model', 'ema')", "name the one"});
  t = load_torch_checkpoint(file("two_models.pt"), "ema");
  EXPECT_EQ(t.at(0).second.to_vector(), (std::vector<float>{0, 0}));
  auto fails = [&](const std::string& entry, const std::vector<std::string>& parts) {
    expect_error<std::runtime_error>([&] { load_torch_checkpoint(file("two_models.pt"), entry); },
                                     parts);
  };
  fails("step", {"'step' holds an int, not a dict of name -> tensor"});
  fails("optimizer", {"has no entry 'optimizer' (it has 'model', 'ema', 'step')"});
  expect_failure("mixed.pt", {"'epoch' holds an int, not a tensor", "no entry is a dict"});
}

TEST_F(TorchCheckpoint, NamesWhatItCannotRead) {
  expect_failure("deflated.pt", {"is compressed"});
  expect_failure("complex.pt", {"storage type torch.ComplexFloatStorage"});
  expect_failure("expected.safetensors", {"not a torch.save checkpoint"});
  expect_failure("missing.pt", {"cannot open"});
}

TEST_F(TorchCheckpoint, CorruptZipEntriesFailTheirChecksum) {
  std::string bytes = read_file(file("zip.pt"));
  size_t at = bytes.find("data/0");  // the first storage's local header name; data follows
  ASSERT_NE(at, std::string::npos);
  bytes[at + 80] ^= 0x10;  // inside the data (the name, extra field and 64-byte padding)
  write_bytes(file("flipped.pt"), bytes);
  expect_failure("flipped.pt", {"CRC-32", "corrupt"});
}

TEST_F(TorchCheckpoint, EveryTruncationIsAnError) {
  for (const char* format : {"zip.pt", "legacy.pt", "zip64.pt"}) {
    std::string bytes = read_file(file(format));
    for (size_t cut = 0; cut < bytes.size(); cut += 3) {
      write_bytes(file("cut.pt"), bytes.substr(0, cut));
      EXPECT_THROW(load_torch_checkpoint(file("cut.pt")), std::runtime_error)
          << format << " cut to " << cut << " bytes";
    }
  }
}

// The legacy format has no checksum: a changed byte may still load, but never reads out of
// bounds or fails other than with std::runtime_error. Only AddressSanitizer sees an
// out-of-bounds read, so the test exists only in the sanitized build (preset asan).
#ifdef __SANITIZE_ADDRESS__
TEST_F(TorchCheckpoint, ChangedBytesNeverReadOutOfBounds) {
  std::string bytes = read_file(file("legacy.pt"));
  for (size_t at = 0; at < bytes.size(); ++at) {
    std::string changed = bytes;
    changed[at] = char(changed[at] ^ 0x41);
    write_bytes(file("changed.pt"), changed);
    try {
      load_torch_checkpoint(file("changed.pt"));
    } catch (const std::runtime_error&) {
    }
  }
}
#endif

// A list nested a million deep (7 bytes a level through the memo) unpickles and is freed
// without recursing once per level (which would overflow the stack).
TEST(Pickle, DeepNestingIsFreedWithoutRecursion) {
  std::string bytes = "\x80\x02]2";  // PROTO 2, the outer list, and it again as the deepest
  for (int level = 0; level < 1000000; ++level)
    bytes +=
        "]q\x01"
        "a0h\x01";  // new list, memo it, append, pop, get it back
  bytes += "0.";
  PickleHooks refuse{
      [](const PickleRef&) -> PickleRef { throw std::runtime_error("pid"); },
      [](const std::string& g, const PickleRef&) -> PickleRef { throw std::runtime_error(g); }};
  size_t pos = 0;
  PickleRef outer = unpickle(bytes, &pos, refuse, "deep");
  EXPECT_EQ(pos, bytes.size());
  ASSERT_EQ(outer->kind, PickleValue::Kind::list);
  ASSERT_EQ(outer->items.size(), 1u);
  EXPECT_EQ(outer->items[0]->items.size(), 1u);
  outer.reset();
}

}  // namespace
}  // namespace qkv::test
