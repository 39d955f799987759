"""Your-own-object demo: renders the project's textured "radio" mesh, trains the slim demo model on the renders.

  make demo-object
  # = python tools/make_demo_object.py --out results/object_demo/radio.glb
  #   python tools/render_object_dataset.py --mesh results/object_demo/radio.glb --out results/object_demo/data \
  #       --num-train 800 --num-val 100 --size 128x128 --seed 0 --span 0.5,0.9 --aim 0.2 --elevation 15,60 \
  #       --ground-probability 1 --distractors 0,1 --occluder-probability 0.1 --noise 0,0.01 --blur 0,0.6 \
  #       --texture-contrast 0.15,0.6
  #   python train.py --config=configs/object_demo.py      (then evaluate.py, same config)

The network is configs/demo.py's (quarter-width DLA34, head_conv 64, ConvGRU on, 128x128 input, batch 8, Adam 4e-3),
trained 20 epochs with the learning rate cut tenfold after epoch 17; the frames are rendered at the input size,
with the object larger, less clutter and softer procedural textures than the tool's defaults (the slim model learns
the defaults too slowly for the time budget: docs/custom-objects.md). Validation frames have procedural
backgrounds, ground textures and clutter drawn from their own seeds, so none is seen in training.
docs/custom-objects.md has the figures measured.
"""

import os

from configs import demo


def get_config():
  config = demo.get_config()
  config.dataset.category = "radio"
  config.train.num_epochs = 20
  config.train.optim.lr_steps = (17,)
  config.train.checkpoint_interval = config.train.validation_interval = 10
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
