#include "options.h"

#include <CLI/CLI.hpp>

#include <iostream>

#include "data/text_normalize.h"
#include "precision.h"
#include "tensor/error.h"

namespace mmsft {

using mms::losses::ObjectiveWeights;

const std::vector<std::string>& compare_objectives() {
  static const std::vector<std::string> names{"listmle+mse", "mse", "bce", "pairwise"};
  return names;
}

ObjectiveWeights Options::weights() const {
  ObjectiveWeights w{0.0, 0.0, w_modality, 0.0, 0.0};
  if (objective == "listmle+mse") {
    w.listmle = w_listmle;
    w.mse = w_mse;
  } else if (objective == "listmle") {
    w.listmle = 1.0;
  } else if (objective == "mse") {
    w.mse = 1.0;
  } else if (objective == "bce") {
    w.bce = 1.0;
  } else if (objective == "pairwise") {
    w.pairwise = 1.0;
  } else {
    mms::fail("--objective: unknown objective '", objective, "' (listmle, mse, bce, pairwise or listmle+mse)");
  }
  return w;
}

void Options::validate() const {
  (void)weights();
  // The checkpoint and metrics.json record these as JSON text, which is UTF-8: a path
  // that is not would be found only when the first checkpoint is written.
  const std::pair<const char*, const std::string*> paths[] = {
      {"--data", &data}, {"--model", &model}, {"--vocab", &vocab}, {"--cache-dir", &cache_dir}, {"--out", &out}};
  for (const auto& [flag, path] : paths)
    MMS_CHECK(mms::data::is_utf8(*path), flag, " '", *path,
              "' is not valid UTF-8 (the checkpoint records it as JSON text): choose a UTF-8 path");
  MMS_CHECK(list_size >= 2, "--list-size must be >= 2 (a list needs two scenarios to rank), got ", list_size);
  MMS_CHECK(batch_lists >= 1, "--batch-lists must be >= 1, got ", batch_lists);
  MMS_CHECK(steps > 0 || epochs > 0, "--epochs or --steps must be positive");
  MMS_CHECK(lr > 0, "--lr must be positive, got ", lr);
  MMS_CHECK(weight_decay >= 0, "--weight-decay must be >= 0, got ", weight_decay);
  MMS_CHECK(grad_clip >= 0, "--grad-clip must be >= 0 (0 = off), got ", grad_clip);
  MMS_CHECK(data_fraction > 0 && data_fraction <= 1, "--data-fraction must be in (0, 1], got ", data_fraction);
  MMS_CHECK(ablate.empty() || ablate == "image" || ablate == "text", "--ablate must be image or text, got '",
            ablate, "'");
  MMS_CHECK(!(freeze_towers && train_last_layers >= 0), "--freeze-towers and --train-last-layers exclude each other");
  MMS_CHECK(seeds >= 1, "--seeds must be >= 1, got ", seeds);
  MMS_CHECK(!(resume && compare), "--resume continues one run; it does not combine with --compare");
  MMS_CHECK(w_listmle >= 0 && w_mse >= 0 && w_modality >= 0, "loss weights must be >= 0");
  MMS_CHECK(image_size % patch_size == 0, "--image-size ", image_size, " must be a multiple of --patch-size ",
            patch_size);
  MMS_CHECK(width % heads == 0, "--width ", width, " must be divisible by --heads ", heads);
  MMS_CHECK(device == "cpu" || device.rfind("cuda", 0) == 0, "--device must be cpu or cuda[:N], got '", device, "'");
  MMS_CHECK(known_precision(precision), "--precision must be fp32, tf32 or bf16, got '", precision, "'");
  MMS_CHECK(precision != "tf32" || device != "cpu",
            "--precision tf32 runs float32 GEMMs on a GPU's TF32 tensor cores; with --device cpu use fp32 or bf16");
}

nlohmann::json Options::to_json() const {
  nlohmann::json j = trajectory_json();
  j["data"] = data;
  j["model"] = model;
  j["vocab"] = vocab;
  j["threads"] = threads;
  j["device"] = device;
  j["eval_every"] = eval_every;
  j["save_every"] = save_every;
  j["out"] = out;
  return j;
}

nlohmann::json Options::trajectory_json() const {
  const ObjectiveWeights w = weights();
  return {{"objective", objective},
          {"weights", {{"listmle", w.listmle}, {"mse", w.mse}, {"modality", w.modality}, {"bce", w.bce},
                       {"pairwise", w.pairwise}}},
          {"list_size", list_size},
          {"batch_lists", batch_lists},
          {"epochs", epochs},
          {"steps", steps},
          {"lr", lr},
          {"weight_decay", weight_decay},
          {"warmup", warmup},
          {"grad_clip", grad_clip},
          {"freeze_towers", freeze_towers},
          {"train_last_layers", train_last_layers},
          {"data_fraction", data_fraction},
          {"seed", seed},
          {"head_dropout", head_dropout},
          {"ablate", ablate},
          {"trim_text", trim_text},
          {"precision", precision},
          {"image_size", image_size},
          {"patch_size", patch_size},
          {"width", width},
          {"layers", layers},
          {"heads", heads},
          {"context_length", context_length},
          {"synthetic_images", synthetic_images}};
}

bool parse_options(int argc, char** argv, Options* o, int* exit_code) {
  CLI::App app{
      "finetune: fine-tune a CLIP pair scorer on MM-SCALE (listwise ListMLE + MSE + modality CE).\n"
      "With no arguments it runs the built-in default: a synthetic MM-SCALE stand-in (cached), a BPE\n"
      "vocabulary trained on it and a small random CLIP, then prints the test metrics."};
  app.get_formatter()->column_width(34);

  auto* in = "Inputs";
  app.add_option("--data", o->data, "MM-SCALE release root (default: $MMSCALE_DATA_ROOT, else the synthetic stand-in)")
      ->group(in);
  app.add_option("--model", o->model, "Hugging Face CLIP checkpoint dir (config.json + model.safetensors)")->group(in);
  app.add_option("--vocab", o->vocab,
                 "tokenizer: dir with vocab.json+merges.txt, or the OpenAI .gz (default: the --model dir's, else "
                 "a BPE trained on the training texts)")
      ->group(in);
  app.add_option("--cache-dir", o->cache_dir, "cache for the synthetic data (default ${XDG_CACHE_HOME:-~/.cache}/mmscale)")
      ->group(in);
  app.add_flag("--check-images", o->check_images,
               "decode every image of the three splits before training, so a corrupt file stops the run at the "
               "start (naming it) instead of when its batch comes")
      ->group(in);

  auto* ob = "Objective";
  app.add_option("--objective", o->objective, "scoring loss")
      ->check(CLI::IsMember({"listmle", "mse", "bce", "pairwise", "listmle+mse"}))
      ->capture_default_str()
      ->group(ob);
  app.add_option("--w-listmle", o->w_listmle, "ListMLE weight in listmle+mse")->capture_default_str()->group(ob);
  app.add_option("--w-mse", o->w_mse, "MSE weight in listmle+mse")->capture_default_str()->group(ob);
  app.add_option("--w-modality", o->w_modality, "modality cross-entropy weight (every objective)")
      ->capture_default_str()
      ->group(ob);

  auto* tr = "Training";
  app.add_option("--list-size", o->list_size, "K: scenarios per image in a list")->capture_default_str()->group(tr);
  app.add_option("--batch-lists", o->batch_lists, "B: images (lists) per batch")->capture_default_str()->group(tr);
  app.add_option("--epochs", o->epochs, "epochs over the training images (when --steps is 0)")
      ->capture_default_str()
      ->group(tr);
  app.add_option("--steps", o->steps, "total optimizer steps (overrides --epochs)")->group(tr);
  app.add_option("--lr", o->lr, "peak learning rate (AdamW, warmup then cosine to 0)")->capture_default_str()->group(tr);
  app.add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay (not on biases/norms)")
      ->capture_default_str()
      ->group(tr);
  app.add_option("--warmup", o->warmup, "warmup steps (default 5% of the run)")->group(tr);
  app.add_option("--grad-clip", o->grad_clip, "clip the global gradient L2 norm (0 = off)")->capture_default_str()->group(tr);
  app.add_flag("--freeze-towers", o->freeze_towers, "train only the projections and the head")->group(tr);
  app.add_option("--train-last-layers", o->train_last_layers,
                 "freeze the towers except their last N encoder layers and final norms")
      ->group(tr);
  app.add_option("--data-fraction", o->data_fraction, "train on a seeded fraction of the training images")
      ->capture_default_str()
      ->group(tr);
  app.add_option("--seed", o->seed, "seed for init, sampling, dropout and ties")->capture_default_str()->group(tr);
  app.add_option("--threads", o->threads, "CPU threads (0 = all cores; default: 1 for the small model, all with --model)")->group(tr);
  app.add_option("--device", o->device, "cpu or cuda[:N]")->capture_default_str()->group(tr);
  app.add_option("--precision", o->precision,
                 "fp32; tf32 (CUDA: float32 GEMMs on TF32 tensor cores); bf16 (autocast: bf16 GEMM operands and "
                 "activations, float32 accumulation, weights, optimizer state, norms and losses)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
      ->capture_default_str()
      ->group(tr);
  app.add_option("--head-dropout", o->head_dropout, "dropout in the pair head")->capture_default_str()->group(tr);
  app.add_option("--ablate", o->ablate,
                 "hide one modality: image = every picture replaced by a constant (zero after normalisation, the "
                 "mean colour), text = every scenario replaced by the empty text")
      ->check(CLI::IsMember({"image", "text"}))
      ->group(tr);
  app.add_flag("--trim-text", o->trim_text,
               "cut every training and evaluation batch's texts to its longest real one instead of the context "
               "length (the same scores up to float32 rounding: the text tower is causal and pools a real token)")
      ->group(tr);

  auto* sm = "Built-in small CLIP (without --model)";
  app.add_option("--image-size", o->image_size, "image side in pixels")->capture_default_str()->group(sm);
  app.add_option("--patch-size", o->patch_size, "ViT patch side")->capture_default_str()->group(sm);
  app.add_option("--width", o->width, "tower width (both towers; projection dim too)")->capture_default_str()->group(sm);
  app.add_option("--layers", o->layers, "encoder layers per tower")->capture_default_str()->group(sm);
  app.add_option("--heads", o->heads, "attention heads")->capture_default_str()->group(sm);
  app.add_option("--context-length", o->context_length, "text tokens per scenario")->capture_default_str()->group(sm);
  app.add_option("--synthetic-images", o->synthetic_images, "images in the synthetic stand-in")
      ->capture_default_str()
      ->group(sm);

  auto* ou = "Evaluation and output";
  app.add_option("--eval-every", o->eval_every, "validate every N steps (0 = each epoch)")->group(ou);
  app.add_option("--save-every", o->save_every, "checkpoint every N steps (0 = at the end only)")->group(ou);
  app.add_option("--log-every", o->log_every, "plain progress line every N steps (not on a terminal)")->group(ou);
  app.add_option("--out", o->out, "output directory")->capture_default_str()->group(ou);
  app.add_flag("--resume", o->resume, "continue from OUT/checkpoint.safetensors")->group(ou);
  app.add_flag("--compare", o->compare, "train listmle+mse, mse, bce and pairwise and print one table")->group(ou);
  app.add_option("--seeds", o->seeds, "with --compare: seeds per objective (mean +/- std)")->group(ou);
  app.add_flag("--quiet", o->quiet, "no progress output")->group(ou);
  app.add_option("--inject-nan-at-step", o->inject_nan_at_step, "testing: treat the loss as NaN at this step")
      ->group("");  // hidden

  try {
    app.parse(argc, argv);
    o->validate();
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return false;
  } catch (const mms::Error& e) {
    std::cerr << "finetune: " << e.what() << "\n";
    *exit_code = 2;
    return false;
  }
  return true;
}

}  // namespace mmsft
