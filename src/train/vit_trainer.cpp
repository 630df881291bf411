#include "train/vit_trainer.h"

#include <cstdio>
#include <filesystem>

#include "data/image_loader.h"
#include "eval/image_eval.h"
#include "model_dir/vit_dir.h"
#include "tensor/threads.h"
#include "train/loop.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {

void report_set(const std::string& what, const data::ImageSet& set) {
  std::fprintf(stderr, "%s: %lld images of %lldx%lldx%lld, %zu classes\n", what.c_str(),
               (long long)set.size(), (long long)set.channels(), (long long)set.height(),
               (long long)set.width(), set.classes.size());
}

// The model directory's config.yaml when resuming; else the configured shape with the
// training data's classes and pixel statistics, saved there.
nn::ViTConfig model_config_for(const ViTTrainConfig& cfg, const data::ImageSet& train) {
  std::string path = model_dir::config_path(cfg.model_dir);
  if (fs::exists(path)) {
    nn::ViTConfig saved = model_dir::read_vit_config(path);
    if (saved.classes != train.classes)
      throw std::runtime_error(path + ": the model's classes differ from " + cfg.train_set + "'s");
    saved.dropout = cfg.dropout;
    return saved;
  }
  nn::ViTConfig c = cfg.model_config();
  c.classes = train.classes;
  data::ChannelStats stats = data::channel_stats(train);
  c.mean = stats.mean, c.stddev = stats.stddev;
  c.check(cfg.model_dir);
  model_dir::write_config(path, c);
  return c;
}

}  // namespace

int64_t train_vit(const ViTTrainConfig& cfg_in) {
  cfg_in.validate();
  Device device = usable_device(cfg_in.device);
  set_num_threads(int(cfg_in.threads));
  check_no_foreign_model(cfg_in.model_dir);
  fs::create_directories(cfg_in.model_dir);
  TrainLog log(cfg_in.model_dir, {"Img.", "images", "images", "images_per_s"});

  // Data: the shape comes from the saved config when resuming, else from the options.
  ViTTrainConfig cfg = cfg_in;
  std::string saved_config = model_dir::config_path(cfg.model_dir);
  nn::ViTConfig shape =
      fs::exists(saved_config) ? model_dir::read_vit_config(saved_config) : cfg.model_config();
  data::ImageShape image_shape{shape.channels, shape.image_size, shape.image_size};
  data::ImageSet train = data::open_image_set(cfg.train_set, image_shape);
  data::ImageSet valid = !cfg.valid_set.empty()
                             ? data::open_image_set(cfg.valid_set, image_shape, train.classes)
                             : (cfg.valid_split > 0 ? data::split_validation(train, cfg.valid_split,
                                                                             uint64_t(cfg.seed))
                                                    : data::ImageSet{});
  report_set("train", train);
  if (valid.size() > 0) report_set("valid", valid);

  nn::ViTConfig mc = model_config_for(cfg, train);
  nn::ViT model(mc);
  Rng init_rng(uint64_t(cfg.seed));
  model.init(init_rng);
  model.to(device);  // before the loop: a resumed checkpoint is copied onto the device
  nn::ParamList params = model.params();

  data::ImageLoaderOptions lo{
      cfg.batch_size, true, uint64_t(cfg.seed), {cfg.crop_padding, cfg.horizontal_flip}};
  data::ImageLoader loader(train, {mc.mean, mc.stddev}, lo);
  // The cosine schedule needs a length: max-epochs gives one when max-updates does not.
  if (cfg.max_updates == 0 && cfg.max_epochs > 0)
    cfg.max_updates = cfg.max_epochs * loader.batches_per_epoch();

  TrainingLoop loop(cfg, cfg.model_dir, params, log);
  if (!loop.resumed())
    log.note("start", "new ViT: " + std::to_string(mc.layers) + " layers, d-model " +
                          std::to_string(mc.d_model) + ", " + std::to_string(mc.patches()) +
                          " patches of " + std::to_string(mc.patch_size) + "x" +
                          std::to_string(mc.patch_size) + ", " +
                          std::to_string(nn::count_params(params)) + " parameters");
  save_train_options(cfg.model_dir, cfg_in);
  loader.seek({loop.progress().epoch, loop.progress().batch_in_epoch});
  nn::Context ctx = loop.context(mc.dropout);

  while (!loop.stopping()) {
    data::ImageBatch b = loader.next();
    double loss_sum = loop.forward_backward([&] {
      return cross_entropy_sum(model.forward(b.images.to(device), ctx), b.labels.to(device), -1,
                               cfg.label_smoothing);
    });
    data::ImagePosition pos = loader.position();
    loop.update(loss_sum, b.size(), b.size(), {pos.epoch, pos.batch});
    if (valid.size() > 0 && loop.validation_due()) {
      ops::AutocastScope autocast(loop.precision());
      eval::ImagePredictions p = eval::predict_images(model, valid);
      eval::ClassificationReport r =
          eval::classification_report(valid.labels, p.predicted, valid.classes);
      ValidStats s;
      s.loss = p.loss;
      s.scores = {{"accuracy", r.accuracy()}};
      loop.validated(s, r.accuracy(), "accuracy");
    }
    loop.checkpoint_if_due();
  }
  return loop.finish();
}

}  // namespace qkv::train
