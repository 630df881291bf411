// Training throughput of a qkv ViT: forward, backward and an AdamW step on random images,
// images/s after warm-up. bench/bench_vit.py runs this beside the same PyTorch model and prints
// the ratio; on its own it prints one JSON line.
//   bench_vit [--preset vit-fashion] [--batch 128] [--threads 2] [--steps 10] [--warmup 2]
//             [--d-model N --layers N --heads N --d-ff N --patch-size N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "nn/vit.h"
#include "optim/optimizer.h"
#include "tensor/threads.h"

namespace {

struct Args {
  std::string preset = "vit-fashion";
  int64_t batch = 128, threads = 2, steps = 10, warmup = 2;
  int64_t d_model = 0, layers = 0, heads = 0, d_ff = 0, patch = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--preset")
      a.preset = v;
    else if (k == "--batch")
      a.batch = std::atoll(v);
    else if (k == "--threads")
      a.threads = std::atoll(v);
    else if (k == "--steps")
      a.steps = std::atoll(v);
    else if (k == "--warmup")
      a.warmup = std::atoll(v);
    else if (k == "--d-model")
      a.d_model = std::atoll(v);
    else if (k == "--layers")
      a.layers = std::atoll(v);
    else if (k == "--heads")
      a.heads = std::atoll(v);
    else if (k == "--d-ff")
      a.d_ff = std::atoll(v);
    else if (k == "--patch-size")
      a.patch = std::atoll(v);
    else {
      std::fprintf(stderr, "bench_vit: unknown option %s\n", argv[i]);
      std::exit(2);
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qkv;
  Args a = parse(argc, argv);
  set_num_threads(int(a.threads));
  nn::ViTConfig c = nn::ViTConfig::preset(a.preset);
  if (a.d_model) c.d_model = a.d_model;
  if (a.layers) c.layers = a.layers;
  if (a.heads) c.heads = a.heads;
  if (a.d_ff) c.d_ff = a.d_ff;
  if (a.patch) c.patch_size = a.patch;
  c.classes.assign(10, "class");
  c.dropout = 0.f;
  nn::ViT model(c);
  Rng rng(1);
  model.init(rng);
  nn::ParamList params = model.params();
  optim::Adam adam(params, {0.9f, 0.999f, 1e-8f, 0.05f});
  Tensor images = Tensor::empty({a.batch, c.channels, c.image_size, c.image_size});
  rng.normal(images);
  std::vector<int32_t> ids(size_t(a.batch));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i % 10);
  Tensor labels = Tensor::from_vector(ids, {a.batch});
  nn::Context ctx{true, 0.f, &rng, ops::AttentionImpl::automatic};

  auto step = [&] {
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      loss = scale(cross_entropy_sum(model.forward(images, ctx), labels, -1, 0.1f),
                   1.f / float(a.batch));
    }
    tape.backward(loss);
    adam.step(1e-4f, 1.f);
    optim::zero_grads(params);
  };
  for (int64_t i = 0; i < a.warmup; ++i) step();
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < a.steps; ++i) step();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"images_per_s\": %.2f, \"batch\": %lld, \"threads\": %lld, \"params\": %lld}\n",
              double(a.batch * a.steps) / s, (long long)a.batch, (long long)a.threads,
              (long long)nn::count_params(params));
  return 0;
}
