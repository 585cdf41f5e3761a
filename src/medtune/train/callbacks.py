"""Training callbacks: every logged metric to CSV, and loss / learning-rate / grad-norm curves as PNG."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

CSV_FIELDS = [
    "step",
    "epoch",
    "loss",
    "eval_loss",
    "learning_rate",
    "grad_norm",
    "token_accuracy",
    "num_tokens",
]


class MetricsCallback(TrainerCallback):
    """Append each log line to ``metrics.csv`` and redraw ``loss_curve.png`` on every save and at the end."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # A resumed run keeps the rows logged before the interruption, up to the checkpoint's step.
        rows = [r for r in read_metrics(self.csv_path) if r.get("step", 0) <= state.global_step]
        with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: r.get(k, "") for k in CSV_FIELDS})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "loss": logs.get("loss", ""),
            "eval_loss": logs.get("eval_loss", ""),
            "learning_rate": logs.get("learning_rate", ""),
            "grad_norm": logs.get("grad_norm", ""),
            "token_accuracy": logs.get("mean_token_accuracy", logs.get("eval_mean_token_accuracy", "")),
            "num_tokens": logs.get("num_tokens", ""),
        }
        if all(row[k] == "" for k in ("loss", "eval_loss")):
            return
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plot_metrics(self.csv_path, self.run_dir / "loss_curve.png")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plot_metrics(self.csv_path, self.run_dir / "loss_curve.png")


def read_metrics(path: Path) -> list[dict[str, float]]:
    if not Path(path).is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                if v not in ("", None):
                    try:
                        row[k] = float(v)
                    except ValueError:
                        continue
            rows.append(row)
    return rows


def plot_metrics(csv_path: Path, png_path: Path) -> Path | None:
    rows = read_metrics(csv_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(r["step"], r[key]) for r in rows if key in r and not math.isnan(r[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for key, label in (("loss", "train loss"), ("eval_loss", "validation loss")):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker="o" if key == "eval_loss" else None, markersize=4, label=label)
    ax.set_title("Loss (assistant tokens only)")
    ax.set_xlabel("optimizer step")
    ax.legend()
    ax.grid(alpha=0.3)
    for ax, key, title in (
        (axes[1], "learning_rate", "Learning rate"),
        (axes[2], "grad_norm", "Gradient norm"),
    ):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name("." + png_path.name)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(png_path)
    return png_path
