// qkv classify --model-dir DIR IMAGE...: the top-k classes of each image with probabilities.
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "commands.h"
#include "data/image_folder.h"
#include "data/image_loader.h"
#include "eval/image_eval.h"
#include "model_dir/vit_dir.h"
#include "tensor/threads.h"

namespace qkv::cli {

Command add_classify(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "classify",
      "Classify image files with a model trained by qkv train-vit: prints the top-k classes\n"
      "of each image with their probabilities. Images of another size than the model's are\n"
      "resized (bilinear) and converted to its channels (grayscale or RGB).");
  struct Args {
    std::string model_dir, checkpoint = "best", device = "cpu";
    std::vector<std::string> images;
    int64_t top_k = 3;
    AdapterArgs adapters;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model-dir", a->model_dir, "a directory written by qkv train-vit")->required();
  cmd->add_option("--checkpoint", a->checkpoint, "best (by validation accuracy) or last");
  cmd->add_option("--top-k,-k", a->top_k, "classes to print per image");
  cmd->add_option("--threads", a->threads, "CPU threads (0: all cores)");
  add_device_option(cmd, a->device);
  add_adapter_options(cmd, a->adapters);
  cmd->add_option("images", a->images, "PNG/JPEG/BMP/... files")->required();
  return [a]() {
    set_num_threads(a->threads);
    Device device = usable_device(a->device);
    std::unique_ptr<nn::ViT> model = model_dir::load_vit_dir(a->model_dir, a->checkpoint);
    model->to(device);
    model_dir::AdapterSet adapters =
        apply_adapters(a->adapters, a->model_dir, a->checkpoint, model->linears(), model->params());
    const nn::ViTConfig& c = model->config();
    data::ImageShape shape{c.channels, c.image_size, c.image_size};
    // Every image first, so a bad file is reported before any output.
    data::ImageSet set;
    set.classes = c.classes;
    set.pixels = Tensor::empty({int64_t(a->images.size()), c.channels, c.image_size, c.image_size},
                               DType::u8);
    int64_t per_image = c.channels * c.image_size * c.image_size;
    for (size_t i = 0; i < a->images.size(); ++i) {
      Tensor img = data::load_image(a->images[i], shape);
      std::copy_n(img.data<uint8_t>(), per_image,
                  set.pixels.data<uint8_t>() + int64_t(i) * per_image);
      set.labels.push_back(0);
      set.sources.push_back(a->images[i]);
    }
    eval::ImagePredictions p = eval::predict_images(*model, set);
    int64_t k = c.num_classes(), top = std::clamp<int64_t>(a->top_k, 1, k);
    for (size_t i = 0; i < a->images.size(); ++i) {
      const float* probs = p.probabilities.data<float>() + int64_t(i) * k;
      std::vector<int64_t> order(static_cast<size_t>(k));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t x, int64_t y) { return probs[x] > probs[y]; });
      std::printf("%s\n", a->images[i].c_str());
      for (int64_t j = 0; j < top; ++j)
        std::printf("  %6.2f%%  %s\n", 100.0 * probs[order[size_t(j)]],
                    c.classes[size_t(order[size_t(j)])].c_str());
    }
    return 0;
  };
}

}  // namespace qkv::cli
