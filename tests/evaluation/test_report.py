"""The report writer: metrics.json, report.txt, per_image.csv and the AP plots."""

import csv
import json

import numpy as np
import pytest
from matplotlib import image as mpimg

from centerpose_jax.evaluation import Evaluator
from centerpose_jax.evaluation import metrics
from centerpose_jax.evaluation import report
from centerpose_jax.testing.detections import from_tao_predictions


@pytest.fixture(scope="module", params=[False, True], ids=["default", "tao"])
def results(request, tao_reference):
  folder = tao_reference / "evaluator"
  evaluator = Evaluator(tao_compatible=request.param)
  for entry in json.loads((folder / "predictions.json").read_text()):
    annotation = json.loads((folder / entry["gt_json"]).read_text())
    evaluator.add_frame(from_tao_predictions(entry["predictions"]), annotation, image_id=entry["frame"])
  return evaluator.finalize()


@pytest.fixture(scope="module")
def paths(results, tmp_path_factory):
  """The files written for `results`, into a folder that does not exist yet."""
  return report.write_report(results, tmp_path_factory.mktemp("report") / "eval")


def test_writes_every_file(paths):
  expected = {"metrics.json", "report.txt", "per_image.csv"} | {f"ap_{name}.png" for name in metrics.METRICS}
  assert set(paths) == expected
  assert {path.name for path in paths["report.txt"].parent.iterdir()} == expected


def test_metrics_json_holds_everything(results, paths):
  loaded = json.loads(paths["metrics.json"].read_text())  # strict JSON: no NaN tokens
  assert loaded["headline"] == pytest.approx(results["headline"])
  for name in metrics.METRICS:
    assert loaded["ap"][name] == pytest.approx(results["ap"][name])
  assert loaded["num_matched"] == results["num_matched"]
  assert [row["image_id"] for row in loaded["per_image"]] == [row["image_id"] for row in results["per_image"]]


def test_report_table(results, paths):
  text = paths["report.txt"].read_text()
  assert f"3D IoU AP@0.5: {results['headline']['3DIoU_AP@0.5']:.4f}" in text
  lines = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
           for line in text.splitlines() if line.startswith("|")}
  assert float(lines["Mean Error 2D:"][0]) == pytest.approx(results["means"]["pixel"], abs=5e-5)
  # Azimuth and polar thresholds in degrees (TAO prints them x 0.1).
  assert [float(cell) for cell in lines["Azimuth Thresh:"]] == pytest.approx(metrics.THRESHOLDS["azimuth"])
  assert float(lines["Polar Thresh:"][-1]) == 20.0
  for name in metrics.METRICS:
    row = lines[f"AP @{report.METRIC_LABELS[name][0]}:"]
    assert [float(cell) for cell in row] == pytest.approx(results["ap"][name], abs=5e-5)


def test_per_image_csv(results, paths):
  with open(paths["per_image.csv"], newline="") as stream:
    rows = list(csv.DictReader(stream))
  predictions = sum(len(image["predictions"]) for image in results["per_image"])
  without = sum(not image["predictions"] for image in results["per_image"])
  assert len(rows) == predictions + without
  assert {row["image_id"] for row in rows} == {str(image["image_id"]) for image in results["per_image"]}
  matched = [row for row in rows if row["status"] == "matched"]
  assert len(matched) == results["num_matched"]
  assert np.mean([float(row["pixel"]) for row in matched]) == pytest.approx(results["means"]["pixel"])


def test_plots_are_images(paths):
  for name in metrics.METRICS:
    pixels = mpimg.imread(paths[f"ap_{name}.png"])
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.std() > 0


def test_empty_evaluation_writes_nulls(tmp_path):
  """Nothing matched and no ground truth: NaN means and AP become null in metrics.json and "nan" in the table."""
  results = Evaluator().finalize()
  assert np.isnan(results["headline"]["2DMPE"]) and np.isnan(results["headline"]["3DIoU_AP@0.5"])
  paths = report.write_report(results, tmp_path)
  loaded = json.loads(paths["metrics.json"].read_text())
  assert loaded["headline"] == {"3DIoU_AP@0.5": None, "2DMPE": None}
  assert "3D IoU AP@0.5: nan" in paths["report.txt"].read_text()
