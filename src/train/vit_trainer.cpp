#include "train/vit_trainer.h"

#include <cstdio>
#include <filesystem>
#include <optional>

#include "data/image_loader.h"
#include "eval/image_eval.h"
#include "model_dir/vit_dir.h"
#include "tensor/threads.h"
#include "train/fine_tune.h"
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

int64_t train_vit(const ViTTrainConfig& cfg_in, const Distillation<data::ImageBatch>* distill) {
  cfg_in.validate();
  Device device = usable_device(cfg_in.device);
  set_num_threads(threads_per_rank(cfg_in.threads));
  wait_for_root_setup();
  std::unique_ptr<nn::ViT> base;
  std::optional<LoraRun> lora;
  if (!cfg_in.init_from.empty()) {
    check_init_from(cfg_in, cfg_in.model_dir, model_dir::Family::vit);
    base = model_dir::load_vit_dir(cfg_in.init_from);
    base->to(device);
    if (cfg_in.lora.enabled())
      lora =
          start_lora(cfg_in, cfg_in.model_dir, base->params(), base->linears(), {"query", "value"});
  }
  check_no_foreign_model(cfg_in.model_dir, lora.has_value());
  fs::create_directories(cfg_in.model_dir);
  TrainLog log(cfg_in.model_dir, {"Img.", "images", "images", "images_per_s"});

  // Data: the shape comes from the base, or the saved config when resuming, else the options;
  // a base's classes label the training set.
  ViTTrainConfig cfg = cfg_in;
  std::string saved_config = model_dir::config_path(cfg.model_dir);
  nn::ViTConfig shape = base                       ? base->config()
                        : fs::exists(saved_config) ? model_dir::read_vit_config(saved_config)
                                                   : cfg.model_config();
  data::ImageShape image_shape{shape.channels, shape.image_size, shape.image_size};
  data::ImageSet train = data::open_image_set(cfg.train_set, image_shape,
                                              base ? shape.classes : std::vector<std::string>{});
  data::ImageSet valid = !cfg.valid_set.empty()
                             ? data::open_image_set(cfg.valid_set, image_shape, train.classes)
                             : (cfg.valid_split > 0 ? data::split_validation(train, cfg.valid_split,
                                                                             uint64_t(cfg.seed))
                                                    : data::ImageSet{});
  report_set("train", train);
  if (valid.size() > 0) report_set("valid", valid);

  bool from_base = base != nullptr;
  nn::ViTConfig mc = from_base ? shape : model_config_for(cfg, train);
  std::unique_ptr<nn::ViT> owned;
  if (from_base) {
    owned = std::move(base);
    mc.dropout = cfg.dropout;
    if (!lora && Ranks::root()) model_dir::write_config(saved_config, mc);  // full fine-tuning
  } else {
    owned = std::make_unique<nn::ViT>(mc);
    Rng init_rng(uint64_t(cfg.seed));
    owned->init(init_rng);
    owned->to(device);  // before the loop: a resumed checkpoint is copied onto the device
  }
  nn::ViT& model = *owned;
  if (lora) publish_lora(cfg, cfg.model_dir, *lora, "", nn::count_params(model.params()), log);
  nn::ParamList params = lora ? lora->adapter.params() : model.params();

  data::ImageLoaderOptions lo{
      cfg.batch_size, true, uint64_t(cfg.seed), {cfg.crop_padding, cfg.horizontal_flip}};
  data::ImageLoader loader(train, {mc.mean, mc.stddev}, lo);
  // The cosine schedule needs a length: max-epochs gives one when max-updates does not.
  int64_t per_update = cfg.accumulate * Ranks::size();  // batches
  if (cfg.max_updates == 0 && cfg.max_epochs > 0)
    cfg.max_updates = (cfg.max_epochs * loader.batches_per_epoch() + per_update - 1) / per_update;

  TrainingLoop loop(cfg, cfg.model_dir, params, log, lora ? lora->files() : WeightFiles{});
  if (!loop.resumed() && from_base) note_init_from(cfg, log);
  if (!loop.resumed() && !from_base)
    log.note("start", "new ViT: " + std::to_string(mc.layers) + " layers, d-model " +
                          std::to_string(mc.d_model) + ", " + std::to_string(mc.patches()) +
                          " patches of " + std::to_string(mc.patch_size) + "x" +
                          std::to_string(mc.patch_size) + ", " +
                          std::to_string(nn::count_params(params)) + " parameters");
  save_train_options(cfg.model_dir, cfg_in);
  loader.seek({loop.progress().epoch, loop.progress().batch_in_epoch});
  nn::Context ctx = loop.context(mc.dropout);

  while (!loop.stopping()) {
    int64_t images = 0;
    double loss_sum = 0;
    loop.for_own_batches(loader, [&](const data::ImageBatch& b) {
      // The teacher runs before the pass, outside its tape: nothing of it is recorded.
      Tensor teacher = distill ? distill->teacher_logits(b) : Tensor();  // [B, classes]
      loss_sum += loop.forward_backward(b.size(), [&] {
        Var logits = model.forward(b.images.to(device), ctx);  // [B, classes]
        Tensor labels = b.labels.to(device);                   // [B]
        if (distill)
          return distillation_loss(logits, teacher, labels, -1, cfg.label_smoothing,
                                   distill->weights);
        return cross_entropy_sum(logits, labels, -1, cfg.label_smoothing);
      });
      images += b.size();
    });
    data::ImagePosition pos = loader.position();
    loop.update(loss_sum, images, images, {pos.epoch, pos.batch});
    if (valid.size() > 0 && loop.validation_due()) {
      auto averaged = loop.evaluation_weights();
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
