"""The embedded demo: trains a slim DLA34 on a generated synthetic cereal_box dataset on a CPU in minutes.

  make demo
  # = python tools/make_synthetic_dataset.py --out results/demo/data --category cereal_box ...
  #   python train.py --config=configs/demo.py --config.results_dir=results/demo   (then evaluate, infer, export)

Expected: validation 3D IoU AP@0.5 >= 0.5 on the synthetic val split after training (docs/benchmarks.md has the
figure measured on 2 CPU cores).
"""

import os

from configs import default


def get_config():
  config = default.get_category_config("cereal_box")
  config.results_dir = "results/demo"
  data = os.path.join(config.results_dir, "data")
  config.dataset.train_data = os.path.join(data, "train")
  config.dataset.val_data = os.path.join(data, "val")
  config.dataset.test_data = os.path.join(data, "val")
  config.dataset.inference_data = os.path.join(data, "val")
  config.dataset.input_res = 128
  config.dataset.output_res = 32
  config.dataset.batch_size = 16
  config.dataset.workers = 2
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.5
  config.train.num_epochs = 30
  config.train.checkpoint_interval = 5
  config.train.validation_interval = 5
  config.train.optim.lr = 2e-3
  config.train.optim.lr_steps = [24]
  config.train.seed = 0
  checkpoints = os.path.join(config.results_dir, "train")
  config.evaluate.checkpoint = checkpoints
  config.inference.checkpoint = checkpoints
  config.export.checkpoint = checkpoints
  config.export.onnx_file = os.path.join(config.results_dir, "export", "centerpose_demo.onnx")
  config.export.input_height = config.export.input_width = config.dataset.input_res
  # The synthetic frames carry their own intrinsics (camera_data next to each image overrides these).
  config.inference.focal_length_x = 300.0
  config.inference.focal_length_y = 300.0
  config.inference.principle_point_x = 120.0
  config.inference.principle_point_y = 160.0
  return config
