// Image data: IDX files (gzip and plain), Debian's Fashion-MNIST, image folders (PNG decoding,
// grayscale/RGB conversion, bilinear resizing, bad files), validation splits, normalisation,
// augmentation and the loader's resumable order.
#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "data/idx_reader.h"
#include "data/image_folder.h"
#include "data/image_loader.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using data::ImageSet;
using data::ImageShape;

std::string fresh_dir(const std::string& name) {
  std::string dir = temp_path(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<uint8_t> idx_bytes(uint32_t magic, const std::vector<uint32_t>& sizes,
                               const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  for (uint32_t v : std::vector<uint32_t>{magic}) out.insert(out.end(), {0, 0, 8, uint8_t(v)});
  for (uint32_t s : sizes)
    out.insert(out.end(), {uint8_t(s >> 24), uint8_t(s >> 16), uint8_t(s >> 8), uint8_t(s)});
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), unsigned(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary)
        .write((const char*)bytes.data(), std::streamsize(bytes.size()));
  }
}

// Three 2x3 images with pixel values 10 * image + position, labels 2, 0, 1.
struct IdxFiles {
  std::string images, labels;
};
IdxFiles write_idx(const std::string& dir, bool gzip) {
  std::vector<uint8_t> pixels;
  for (int i = 0; i < 3; ++i)
    for (int p = 0; p < 6; ++p) pixels.push_back(uint8_t(10 * i + p));
  IdxFiles f{dir + "/images.idx" + (gzip ? ".gz" : ""), dir + "/labels.idx" + (gzip ? ".gz" : "")};
  write_file(f.images, idx_bytes(3, {3, 2, 3}, pixels), gzip);
  write_file(f.labels, idx_bytes(1, {3}, {2, 0, 1}), gzip);
  return f;
}

template <class F>
void expect_error_mentions(F&& f, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << text;
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(IdxReader, ReadsGzipAndPlainFiles) {
  for (bool gzip : {true, false}) {
    IdxFiles f = write_idx(fresh_dir(gzip ? "idx_gz" : "idx_plain"), gzip);
    ImageSet set = data::read_idx_set(f.images, f.labels, {"a", "b", "c"});
    ASSERT_EQ(set.pixels.shape(), (Shape{3, 1, 2, 3}));
    EXPECT_EQ(set.labels, (std::vector<int32_t>{2, 0, 1}));
    EXPECT_EQ(set.pixels.data<uint8_t>()[6 + 4], 14);
    EXPECT_EQ(set.classes[2], "c");
    // Without class names the labels are numbered.
    set = data::open_image_set("idx:" + f.images + "," + f.labels, {1, 2, 3});
    EXPECT_EQ(set.classes, (std::vector<std::string>{"0", "1", "2"}));
  }
}

TEST(IdxReader, BadFilesNameTheFileAndTheProblem) {
  std::string dir = fresh_dir("idx_bad");
  IdxFiles f = write_idx(dir, true);
  write_file(dir + "/magic.gz", idx_bytes(2, {3}, {0, 0, 0}), true);
  expect_error_mentions([&] { data::read_idx_set(dir + "/magic.gz", f.labels, {}); },
                        dir +
                            "/magic.gz: not an IDX file of 3-D unsigned bytes (magic number "
                            "0x00000802, expected 0x00000803)");
  write_file(dir + "/short.gz", idx_bytes(3, {3, 2, 3}, {1, 2, 3}), true);
  expect_error_mentions([&] { data::read_idx_set(dir + "/short.gz", f.labels, {}); },
                        "short.gz: header promises 18 bytes of data, the file holds 3");
  write_file(dir + "/two.gz", idx_bytes(1, {2}, {0, 1}), true);
  expect_error_mentions([&] { data::read_idx_set(f.images, dir + "/two.gz", {}); },
                        "holds 3 images but " + dir + "/two.gz holds 2 labels");
  expect_error_mentions(
      [&] {
        data::read_idx_set(f.images, f.labels, {"a", "b"});
      },
      "label 2 of item 0 is not below the 2 classes");
  expect_error_mentions([&] { data::read_idx_set(dir + "/none.gz", f.labels, {}); },
                        dir + "/none.gz: cannot open");
  expect_error_mentions(
      [&] {
        data::open_image_set("idx:" + f.images + "," + f.labels, {1, 28, 28});
      },
      "images are [1, 2, 3], the model expects [1, 28, 28]");
}

TEST(FashionMnist, DebianPackageHasTheTestSetWithBalancedClasses) {
  ImageSet test = data::open_image_set("fashion-mnist:test", {1, 28, 28});
  ASSERT_EQ(test.pixels.shape(), (Shape{10000, 1, 28, 28}));
  std::vector<int> per_class(10);
  for (int32_t l : test.labels) ++per_class[size_t(l)];
  EXPECT_EQ(per_class, std::vector<int>(10, 1000));
  EXPECT_EQ(test.classes[9], "Ankle boot");
  EXPECT_EQ(test.labels[0], 9);  // the first test image is an ankle boot
  data::ChannelStats s = data::channel_stats(test);
  EXPECT_NEAR(s.mean[0], 0.2868, 1e-3);  // the known statistics of the test set
  EXPECT_NEAR(s.stddev[0], 0.3524, 1e-3);
  expect_error_mentions(
      [] {
        data::open_image_set("fashion-mnist:dev", {1, 28, 28});
      },
      "the split must be train or test");
}

// Writes a w x h PNG of `channels` channels whose pixel (y, x, c) is f(y, x, c).
template <class F>
void write_png(const std::string& path, int w, int h, int channels, F f) {
  std::vector<uint8_t> px;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c) px.push_back(uint8_t(f(y, x, c)));
  ASSERT_TRUE(stbi_write_png(path.c_str(), w, h, channels, px.data(), w * channels));
}

TEST(ImageFolder, ReadsClassesInNameOrderConvertsAndResizes) {
  std::string root = fresh_dir("folder");
  fs::create_directories(root + "/dog");
  fs::create_directories(root + "/cat");
  write_png(root + "/dog/1.png", 4, 2, 3,
            [](int y, int x, int c) { return 10 * y + x + 100 * (c == 2); });
  write_png(root + "/cat/b.png", 4, 2, 1, [](int y, int x, int) { return 7; });
  write_png(root + "/cat/a.png", 6, 6, 1, [](int y, int x, int) { return 200; });
  std::ofstream(root + "/cat/.hidden") << "skipped";

  ImageSet set = data::read_image_folder(root, {3, 2, 4});
  EXPECT_EQ(set.classes, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(set.labels, (std::vector<int32_t>{0, 0, 1}));
  EXPECT_EQ(set.sources[0], root + "/cat/a.png");
  const uint8_t* p = set.pixels.data<uint8_t>();
  EXPECT_EQ(p[0], 200);                      // a.png, 6x6 resized to 2x4, stays constant
  EXPECT_EQ(p[24 + 2 * 8 + 7], 7);           // b.png, gray repeated into blue
  EXPECT_EQ(p[48 + 0 * 8 + 1 * 4 + 3], 13);  // dog: red channel at (1, 3) = 10 + 3
  EXPECT_EQ(p[48 + 2 * 8 + 0], 100);         // dog: blue channel at (0, 0)

  // Grayscale, and a class list given by a model (labels follow its order).
  ImageSet gray = data::open_image_set(root, {1, 2, 4}, {"dog", "cat", "bird"});
  EXPECT_EQ(gray.labels, (std::vector<int32_t>{1, 1, 0}));
  EXPECT_EQ(gray.classes.size(), 3u);
  EXPECT_EQ(gray.pixels.data<uint8_t>()[8], 7);
}

TEST(ImageFolder, BadInputNamesTheFileOrFolder) {
  std::string root = fresh_dir("folder_bad");
  fs::create_directories(root + "/cat");
  expect_error_mentions(
      [&] {
        data::read_image_folder(root, {1, 4, 4});
      },
      root + "/cat: class folder holds no images");
  write_png(root + "/cat/ok.png", 2, 2, 1, [](int, int, int) { return 1; });
  std::ofstream(root + "/cat/notes.txt") << "not an image";
  expect_error_mentions(
      [&] {
        data::read_image_folder(root, {1, 4, 4});
      },
      root + "/cat/notes.txt: not a readable image");
  fs::remove(root + "/cat/notes.txt");
  expect_error_mentions(
      [&] {
        data::read_image_folder(root, {1, 4, 4}, {"dog"});
      },
      root + "/cat: class 'cat' is not one of the model's classes");
  expect_error_mentions(
      [&] {
        data::read_image_folder(root + "/cat", {1, 4, 4});
      },
      "holds no class folders");
  expect_error_mentions(
      [&] {
        data::load_image(root + "/missing.png", {1, 4, 4});
      },
      "missing.png: not a readable image (no such file)");
}

TEST(ImageFolder, BytesInMemoryAndPixelArraysEqualTheFile) {
  // The server decodes uploaded bytes and the Python module converts numpy arrays: both must
  // give what load_image gives for the same picture (stb's luma for gray, alpha dropped).
  std::string root = fresh_dir("memory");
  auto rgba = [](int y, int x, int c) { return c == 3 ? 128 : 37 * y + 11 * x + 60 * c; };
  write_png(root + "/a.png", 5, 3, 4, rgba);
  std::ifstream file(root + "/a.png", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> hwc;
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 4; ++c) hwc.push_back(uint8_t(rgba(y, x, c)));
  auto bytes_of = [](const Tensor& t) {
    return std::vector<uint8_t>(t.data<uint8_t>(), t.data<uint8_t>() + t.numel());
  };
  for (data::ImageShape shape : {data::ImageShape{1, 3, 5}, {3, 3, 5}, {3, 4, 4}, {1, 7, 2}}) {
    std::vector<uint8_t> expected = bytes_of(data::load_image(root + "/a.png", shape));
    EXPECT_EQ(bytes_of(data::decode_image(bytes, shape, "upload")), expected);
    EXPECT_EQ(bytes_of(data::image_from_pixels(hwc.data(), 3, 5, 4, shape)), expected);
  }
  expect_error_mentions(
      [&] {
        data::decode_image("GIF89a junk", {1, 4, 4}, "image 2");
      },
      "image 2: not a readable image");
  expect_error_mentions(
      [&] {
        data::decode_image("", {1, 4, 4}, "image 1");
      },
      "image 1: not a readable image (empty)");
  expect_error_mentions(
      [&] {
        data::image_from_pixels(hwc.data(), 3, 5, 5, {1, 4, 4});
      },
      "1 to 4 channels, not 5");
}

TEST(ImageFolder, BilinearResizeUsesHalfPixelCentres) {
  // 1-D [a, b] -> 4 samples at source positions -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
  Tensor x = Tensor::from_vector(std::vector<float>{8, 16}, {1, 1, 2});
  EXPECT_EQ(data::resize_bilinear(x, 1, 4).to_vector(), (std::vector<float>{8, 10, 14, 16}));
  // Halving a 4x4 averages each 2x2 block.
  std::vector<float> v(16);
  for (int i = 0; i < 16; ++i) v[size_t(i)] = float(i);
  Tensor y = data::resize_bilinear(Tensor::from_vector(v, {1, 4, 4}), 2, 2);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{2.5f, 4.5f, 10.5f, 12.5f}));
}

ImageSet numbered_set(int64_t n, int64_t h = 3, int64_t w = 3) {
  ImageSet set;
  set.pixels = Tensor::empty({n, 1, h, w}, DType::u8);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < h * w; ++p) set.pixels.data<uint8_t>()[i * h * w + p] = uint8_t(i);
    set.labels.push_back(int32_t(i % 3));
    set.sources.push_back("");
  }
  set.classes = {"a", "b", "c"};
  return set;
}

std::vector<uint8_t> bytes(const Tensor& t) {
  return {t.data<uint8_t>(), t.data<uint8_t>() + t.numel()};
}

TEST(ImageSplit, ValidationIsASeededDisjointPart) {
  ImageSet train = numbered_set(50);
  ImageSet valid = data::split_validation(train, 10, 7);
  ASSERT_EQ(train.size(), 40);
  ASSERT_EQ(valid.size(), 10);
  std::set<int> seen;
  for (const ImageSet* s : {&train, &valid})
    for (int64_t i = 0; i < s->size(); ++i) seen.insert(s->pixels.data<uint8_t>()[i * 9]);
  EXPECT_EQ(seen.size(), 50u);
  ImageSet again = numbered_set(50), other = numbered_set(50);
  EXPECT_EQ(bytes(data::split_validation(again, 10, 7).pixels), bytes(valid.pixels));
  EXPECT_NE(bytes(data::split_validation(other, 10, 8).pixels), bytes(valid.pixels));
  EXPECT_THROW(data::split_validation(again, 40, 1), std::invalid_argument);
}

TEST(ImageLoader, NormalisesAndServesEachImageOncePerEpoch) {
  ImageSet set = numbered_set(10);
  data::Normalization norm{{0.5f}, {0.25f}};
  data::ImageLoader loader(set, norm, {4, true, 3, {}});
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  std::vector<int64_t> epoch0, epoch1;
  for (int b = 0; b < 3; ++b) {
    data::ImageBatch batch = loader.next();
    for (int64_t i = 0; i < batch.size(); ++i) {
      int64_t j = batch.indices[size_t(i)];
      EXPECT_FLOAT_EQ(batch.images.data<float>()[i * 9 + 4], (float(j) / 255.f - 0.5f) / 0.25f);
      EXPECT_EQ(batch.labels.data<int32_t>()[i], set.labels[size_t(j)]);
      epoch0.push_back(j);
    }
  }
  EXPECT_EQ(loader.position().epoch, 1);
  for (int b = 0; b < 3; ++b)
    for (int64_t j : loader.next().indices) epoch1.push_back(j);
  EXPECT_NE(epoch0, epoch1);
  std::sort(epoch0.begin(), epoch0.end());
  std::sort(epoch1.begin(), epoch1.end());
  EXPECT_EQ(epoch0, epoch1);
  EXPECT_EQ(epoch0.size(), 10u);
}

TEST(ImageLoader, AugmentsWithPaddedCropsAndFlipsReproduciblyAfterSeek) {
  // Each image's pixel (y, x) = 16 * y + x + 1 on a 5x5 grid, so a shift or flip is visible.
  ImageSet set = numbered_set(40, 5, 5);
  for (int64_t i = 0; i < 40; ++i)
    for (int64_t p = 0; p < 25; ++p)
      set.pixels.data<uint8_t>()[i * 25 + p] = uint8_t(16 * (p / 5) + p % 5 + 1);
  data::Normalization unit{{0.f}, {1.f / 255.f}};  // leaves raw pixel values
  data::ImageLoaderOptions o{8, true, 5, {2, true}};
  data::ImageLoader loader(set, unit, o);
  std::vector<Tensor> first;
  for (int b = 0; b < 7; ++b) first.push_back(loader.next().images);
  int flips = 0, shifts = 0;
  for (const Tensor& t : first)
    for (int64_t i = 0; i < t.size(0); ++i) {
      const float* img = t.data<float>() + i * 25;
      // Find a pixel that came from the image (non-zero) to recover the shift and flip.
      for (int64_t p = 0; p < 25; ++p)
        if (img[p] != 0) {
          int64_t sy = (int64_t(img[p]) - 1) / 16, sx = (int64_t(img[p]) - 1) % 16;
          int64_t y = p / 5, x = p % 5;
          if (p % 5 + 1 < 5 && img[p + 1] != 0) flips += img[p + 1] < img[p];
          shifts += (sy != y) || (sx != x && sx != 4 - x);
          EXPECT_LE(std::abs(sy - y), 2);
          break;
        }
    }
  EXPECT_GT(flips, 5);
  EXPECT_GT(shifts, 10);
  // Resuming at epoch 1, batch 2 gives the same batches as the unbroken run.
  data::ImageLoader resumed(set, unit, o);
  resumed.seek({1, 1});
  EXPECT_EQ(resumed.next().images.to_vector(), first[6].to_vector());
  EXPECT_THROW(resumed.seek({0, 5}), std::invalid_argument);
}

}  // namespace
}  // namespace qkv::test
