"""ImageNet backbone weights downloaded once into the cache and checked (convert/pretrained.py), served by a
local HTTP server on 127.0.0.1 (nothing leaves the machine)."""

import functools
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from centerpose_jax.convert import pretrained
from centerpose_jax.convert import pytorch
from centerpose_jax.models import create_model
from centerpose_jax import checkpoint as checkpoint_lib
from centerpose_jax.tasks import train as train_task
from centerpose_jax.testing.variables import random_variables
from configs import default

torch = pytest.importorskip("torch", reason="torch writes the served .pth (requirements-dev.txt)")


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
  requests = []

  def do_GET(self):  # pylint: disable=invalid-name
    self.requests.append(self.path)
    super().do_GET()

  def log_message(self, *args):  # quiet
    pass


@pytest.fixture()
def server(tmp_path):
  """(served folder, base URL, list of requested paths) of an HTTP server on 127.0.0.1."""
  folder = tmp_path / "served"
  folder.mkdir()
  _CountingHandler.requests = []
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                         functools.partial(_CountingHandler, directory=str(folder)))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", _CountingHandler.requests
  httpd.shutdown()
  httpd.server_close()


def _small_dla():
  config = default.get_config()
  config.model.backbone.width_multiplier = 0.25
  config.model.head_conv = 16
  return create_model(config)


def _imagenet_file(path, model):
  """A .pth in the ucbdrive DLA34 layout (backbone keys without `base.`, plus the classifier) for `model`."""
  variables = random_variables(model, (64, 64), seed=5)
  state_dict = {key[len("base."):]: torch.from_numpy(value)
                for key, value in pytorch.to_tao_state_dict(variables).items() if key.startswith("base.")}
  state_dict["fc.weight"] = torch.zeros(1000, 128, 1, 1)
  torch.save(state_dict, path)
  return variables


def test_download_once_check_and_load_into_the_backbone(server, tmp_path, monkeypatch):
  folder, url, requests = server
  model = _small_dla()
  served = _imagenet_file(folder / "dla34-test.pth", model)
  digest = hashlib.sha256((folder / "dla34-test.pth").read_bytes()).hexdigest()
  weights = pretrained.PretrainedWeights("test weights", f"{url}/dla34-test.pth", "dla34-test.pth", digest[:8])
  monkeypatch.setattr(pretrained, "DLA34_IMAGENET", weights)
  monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))

  config = default.get_config()  # model.use_pretrained without a path: TAO's DLA34 download
  config.model.use_pretrained = True
  path = train_task.pretrained_backbone_source(config)
  assert path == tmp_path / "cache" / "dla34-test.pth" and requests == ["/dla34-test.pth"]
  assert pretrained.file_sha256(path) == digest
  assert train_task.pretrained_backbone_source(config) == path and len(requests) == 1  # cached: not downloaded again

  fresh = random_variables(model, (64, 64), seed=9)
  loaded = pytorch.load_pretrained_backbone(fresh, checkpoint_lib.load_state_dict(path), "DLA34")
  # Beyond TAO's unused keys (BatchNorm counters, the dead level3/4 projections) only the classifier is left out.
  assert [key for key in loaded.unused_keys if not pytorch.is_unused_tao_key("base." + key)] == ["fc.weight"]
  assert not loaded.not_loaded
  np.testing.assert_array_equal(loaded.variables["params"]["base"]["level2"]["root"]["conv"]["kernel"],
                                served["params"]["base"]["level2"]["root"]["conv"]["kernel"])
  np.testing.assert_array_equal(loaded.variables["params"]["hm"]["0"]["kernel"], fresh["params"]["hm"]["0"]["kernel"])

  # A damaged cached copy is not used: it is downloaded again.
  path.write_bytes(b"truncated")
  assert pretrained.fetch(weights) == path and len(requests) == 2 and pretrained.file_sha256(path) == digest


def test_a_wrong_checksum_saves_nothing(server, tmp_path):
  folder, url, _ = server
  (folder / "w.pth").write_bytes(b"not the weights")
  weights = pretrained.PretrainedWeights("test weights", f"{url}/w.pth", "w.pth", "0" * 64)
  with pytest.raises(pretrained.PretrainedDownloadError, match="does not match the expected") as error:
    pretrained.fetch(weights, tmp_path / "cache")
  assert str(tmp_path / "cache" / "w.pth") in str(error.value)
  assert not list((tmp_path / "cache").iterdir())  # no partial or unverified file left


def test_offline_the_error_names_the_url_and_where_to_put_the_file(server, tmp_path):
  _, url, _ = server
  missing = pretrained.PretrainedWeights("test weights", f"{url}/absent.pth", "absent.pth", "ab" * 4)
  with pytest.raises(pretrained.PretrainedDownloadError) as error:
    pretrained.fetch(missing, tmp_path / "cache")  # HTTP 404
  assert f"{url}/absent.pth" in str(error.value) and str(tmp_path / "cache" / "absent.pth") in str(error.value)
  with socket.socket() as probe:  # a port nothing listens on: connection refused, as offline
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  unreachable = pretrained.PretrainedWeights("test weights", f"http://127.0.0.1:{port}/w.pth", "w.pth", "ab" * 4)
  with pytest.raises(pretrained.PretrainedDownloadError, match="without internet access") as error:
    pretrained.fetch(unreachable, tmp_path / "cache")
  assert "model.backbone.pretrained_backbone_path" in str(error.value)


def test_taos_file_and_its_checksum_are_explicit():
  assert pretrained.DLA34_IMAGENET.url == "http://dl.yf.io/dla/models/imagenet/dla34-ba72cf86.pth"
  assert pretrained.DLA34_IMAGENET.sha256 == "ba72cf86"  # the digest prefix the file name carries
  with pytest.raises(ValueError, match="at least 8"):
    pretrained.verify_sha256(__file__, "ba72")
