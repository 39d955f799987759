"""Your-own-object demo: renders the project's textured "radio" mesh, trains the slim demo model on the renders.

  make demo-object
  # = python tools/make_demo_object.py --out results/object_demo/radio.glb
  #   python tools/render_object_dataset.py --mesh results/object_demo/radio.glb --out results/object_demo/data \
  #       --num-train 800 --num-val 100 --size 128x128 --seed 0
  #   python train.py --config=configs/object_demo.py      (then evaluate.py, same config)

The network and schedule are configs/demo.py's (quarter-width DLA34, head_conv 64, 128x128 input, 16 epochs); the
frames are rendered at the input size. Validation frames have procedural backgrounds, ground textures and clutter
drawn from their own seeds, so none is seen in training. docs/custom-objects.md has the figures measured.
"""

import os

from configs import demo


def get_config():
  config = demo.get_config()
  config.dataset.category = "radio"
  config.results_dir = "results/object_demo"
  data = os.path.join(config.results_dir, "data")
  config.dataset.train_data = os.path.join(data, "train")
  config.dataset.val_data = config.dataset.test_data = config.dataset.inference_data = os.path.join(data, "val")
  checkpoints = os.path.join(config.results_dir, "train")
  config.evaluate.checkpoint = config.inference.checkpoint = config.export.checkpoint = checkpoints
  config.export.onnx_file = os.path.join(config.results_dir, "export", "centerpose_radio.onnx")
  # The rendered frames carry their own intrinsics (camera_data next to each image overrides these).
  config.inference.focal_length_x = config.inference.focal_length_y = 128.0
  config.inference.principle_point_x = config.inference.principle_point_y = 63.5
  return config
