"""Writes an evaluation's results (`Evaluator.finalize()`) to a folder.

Files:
  metrics.json   everything finalize() returned (NaN written as null).
  report.txt     a table like TAO's report.txt: mean errors, then thresholds and AP per metric. TAO prints the
                 azimuth and polar thresholds multiplied by 0.1 (a display bug); here they are in degrees.
  per_image.csv  one row per prediction (its image, status, matched ground truth and errors); an image
                 without predictions gets one row with the prediction columns empty.
  ap_<metric>.png  AP versus threshold for each metric.
"""

import csv
import json
import math
import pathlib

from matplotlib import figure

from centerpose_jax.evaluation import metrics

METRIC_LABELS = {
    "scale": ("Scale", "relative-scale error"),
    "iou": ("3D IoU", "3D IoU"),
    "pixel": ("2D Pixel", "2D mean projection error (normalised image units)"),
    "azimuth": ("Azimuth", "azimuth error (degrees)"),
    "polar": ("Polar", "elevation error (degrees)"),
    "add": ("ADD", "ADD (metres)"),
    "adds": ("ADDS", "ADD-S (metres)"),
}
SCALE_SOURCE_LABELS = {"ar_plane": "from the AR ground plane (AR_data)",
                       "gt_height": "from the ground-truth box height (no AR_data)",
                       "absolute": "predictions taken as metric (dataset.use_absolute_scale)"}
_MEAN_LABELS = (("scale", "Mean Error Scale:"), ("pixel", "Mean Error 2D:"), ("iou", "Mean 3D IoU:"),
                ("azimuth", "Mean Azimuth Error:"), ("polar", "Mean Polar Error:"), ("add", "Mean ADD:"),
                ("adds", "Mean ADD-S:"))
_IMAGE_COLUMNS = ("image_id", "width", "height", "num_gt", "num_gt_counted", "evaluated", "scale_source")
_PREDICTION_COLUMNS = ("prediction", "score", "status", "matched_gt", "scale_source", "scale_factor",
                       "rotation") + metrics.METRICS


def _number(value) -> str:
  return "nan" if value is None or math.isnan(value) else f"{value:.4f}"


def _table(rows) -> str:
  """Rows of cells as a psql-style text table (the layout of TAO's report)."""
  widths = [0] * max(len(row) for row in rows)
  for row in rows:
    for i, cell in enumerate(row):
      widths[i] = max(widths[i], len(cell))
  rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
  lines = [rule]
  for row in rows:
    cells = list(row) + [""] * (len(widths) - len(row))
    lines.append("| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |")
  lines.append(rule)
  return "\n".join(lines)


def format_report(results) -> str:
  """report.txt's text: a summary line, mean errors, then per metric its thresholds and AP."""
  settings = results["settings"]
  mode = "TAO-compatible" if settings["tao_compatible"] else "default"
  summary = (f"3D IoU AP@0.5: {_number(results['headline']['3DIoU_AP@0.5'])}  "
             f"2D MPE: {_number(results['headline']['2DMPE'])}  "
             f"({mode} mode, eval_num_symmetry {settings['num_symmetry']}, "
             f"{results['num_images_evaluated']}/{results['num_images']} images, "
             f"{results['num_matched']} matched predictions of {results['num_predictions']}, "
             f"{results['num_gt']} ground-truth objects)")
  sources = results.get("scale_sources", {})
  if sources:
    summary += "\nmetric scale: " + ", ".join(
        f"{SCALE_SOURCE_LABELS[name]} in {count} frame{'s' if count != 1 else ''}"
        for name, count in sorted(sources.items()))
  rows = [[label, _number(results["means"][name])] for name, label in _MEAN_LABELS]
  for name in metrics.METRICS:
    title = METRIC_LABELS[name][0]
    rows.append([])
    rows.append([f"{title} Thresh:"] + [_number(t) for t in results["thresholds"][name]])
    rows.append([f"AP @{title}:"] + [_number(ap) for ap in results["ap"][name]])
  return summary + "\n" + _table([row or [""] for row in rows]) + "\n"


def _json_ready(value):
  """`value` with NaN/inf floats replaced by None (strict JSON)."""
  if isinstance(value, dict):
    return {key: _json_ready(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(item) for item in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _csv_rows(results):
  for image in results["per_image"]:
    image_cells = [image[column] for column in _IMAGE_COLUMNS]
    if not image["predictions"]:
      yield image_cells + [""] * len(_PREDICTION_COLUMNS)
    for prediction in image["predictions"]:
      cells = dict(prediction, prediction=prediction["index"])
      yield image_cells + [cells.get(column, "") for column in _PREDICTION_COLUMNS]


def _plot_ap(results, name, path):
  title, axis_label = METRIC_LABELS[name]
  fig = figure.Figure(figsize=(5, 3.5), dpi=100)
  axes = fig.add_subplot()
  axes.plot(results["thresholds"][name], results["ap"][name], marker="o")
  axes.set_xlabel(axis_label + " threshold")
  axes.set_ylabel("AP")
  axes.set_title(f"AP @{title}")
  finite = [ap for ap in results["ap"][name] if ap is not None and math.isfinite(ap)]
  axes.set_ylim(0.0, max([1.0] + finite) + 0.05)  # TAO-compatible AP can exceed 1
  axes.grid(True, alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)


def write_report(results, output_dir) -> dict:
  """Writes metrics.json, report.txt, per_image.csv and ap_<metric>.png into `output_dir` (created).

  Returns:
    {name: pathlib.Path} of every file written.
  """
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  paths = {"metrics.json": output_dir / "metrics.json", "report.txt": output_dir / "report.txt",
           "per_image.csv": output_dir / "per_image.csv"}
  paths["metrics.json"].write_text(json.dumps(_json_ready(results), indent=2, allow_nan=False) + "\n")
  paths["report.txt"].write_text(format_report(results))
  with open(paths["per_image.csv"], "w", newline="", encoding="utf-8") as stream:
    writer = csv.writer(stream)
    writer.writerow(_IMAGE_COLUMNS + _PREDICTION_COLUMNS)
    writer.writerows(_csv_rows(results))
  for name in metrics.METRICS:
    paths[f"ap_{name}.png"] = output_dir / f"ap_{name}.png"
    _plot_ap(results, name, paths[f"ap_{name}.png"])
  return paths
