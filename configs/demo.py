"""The embedded demo: trains a slim DLA34 on a generated synthetic camera dataset on a CPU in minutes.

  make demo
  # = python tools/make_synthetic_dataset.py --out results/demo/data --category camera --num-train 800 \
  #       --num-val 100 --width 256 --height 256 --max-objects 1 --seed 0 --skip-existing
  #   python train.py --config=configs/demo.py      (then evaluate.py, infer.py, export.py, same config;
  #   tools/gen_trt_engine.py too)

One object per 256x256 frame (the whole 128x128 input is image, no letterbox bands), a quarter-width DLA34
(head_conv 64, ConvGRU on) at 128x128, batch 8, 16 epochs of 800 frames with the learning rate cut tenfold after
epoch 13: under 10 minutes of training on 2 CPU cores. docs/benchmarks.md has the validation 3D IoU AP@0.5 and
2D MPE measured, and what other categories and settings reached.
"""

import os

from configs import default


def get_config():
  config = default.get_category_config("camera")
  config.results_dir = "results/demo"
  data = os.path.join(config.results_dir, "data")
  config.dataset.train_data = os.path.join(data, "train")
  config.dataset.val_data = os.path.join(data, "val")
  config.dataset.test_data = os.path.join(data, "val")
  config.dataset.inference_data = os.path.join(data, "val")
  config.dataset.input_res = 128
  config.dataset.output_res = 32
  config.dataset.batch_size = 8
  config.dataset.workers = 2
  config.dataset.not_rand_crop = True  # whole frames as at validation (flip and colour stay on)
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.25
  config.model.head_conv = 64
  config.train.num_epochs = 16
  config.train.checkpoint_interval = 8
  config.train.validation_interval = 8
  config.train.optim.lr = 4e-3
  config.train.optim.lr_steps = (13,)
  config.train.seed = 0
  checkpoints = os.path.join(config.results_dir, "train")
  config.evaluate.checkpoint = checkpoints
  config.inference.checkpoint = checkpoints
  config.export.checkpoint = checkpoints
  config.export.onnx_file = os.path.join(config.results_dir, "export", "centerpose_demo.onnx")
  config.export.input_height = config.export.input_width = config.dataset.input_res
  config.gen_trt_engine.input_height = config.gen_trt_engine.input_width = config.dataset.input_res
  # The synthetic frames carry their own intrinsics (camera_data next to each image overrides these).
  config.inference.focal_length_x = 237.0
  config.inference.focal_length_y = 237.0
  config.inference.principle_point_x = 128.0
  config.inference.principle_point_y = 128.0
  return config
