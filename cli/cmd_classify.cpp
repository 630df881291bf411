// qkv classify --model-dir DIR IMAGE...: the top-k classes of each image with probabilities.
#include <cstdio>

#include "commands.h"
#include "data/image_folder.h"
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
    std::string model_dir, checkpoint = "best", device = "cpu", compute_type;
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
  add_compute_type_option(cmd, a->compute_type);
  add_adapter_options(cmd, a->adapters);
  cmd->add_option("images", a->images, "PNG/JPEG/BMP/... files")->required();
  return [a]() {
    set_num_threads(a->threads);
    Device device = usable_device(a->device);
    std::unique_ptr<nn::ViT> model = model_dir::load_vit_dir(a->model_dir, a->checkpoint);
    model->to(device);
    model_dir::AdapterSet adapters =
        apply_adapters(a->adapters, a->model_dir, a->checkpoint, model->linears(), model->params());
    apply_compute_type(a->compute_type, a->model_dir, a->checkpoint, device, model->linears());
    const nn::ViTConfig& c = model->config();
    data::ImageShape shape{c.channels, c.image_size, c.image_size};
    // Every image first, so a bad file is reported before any output.
    std::vector<Tensor> images;
    for (const std::string& path : a->images) images.push_back(data::load_image(path, shape));
    auto top = eval::classify_images(*model, images, a->top_k);
    for (size_t i = 0; i < a->images.size(); ++i) {
      std::printf("%s\n", a->images[i].c_str());
      for (const eval::ClassScore& s : top[i])
        std::printf("  %6.2f%%  %s\n", 100.0 * s.probability, s.label.c_str());
    }
    return 0;
  };
}

}  // namespace qkv::cli
