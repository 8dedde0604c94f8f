"""``gplinker info``: what a saved model is, from its gplinker.json (no weights loaded)."""

from __future__ import annotations

import argparse
import json

from gplinker.cli.common import add_common, model_path, registry


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    i = sub.add_parser(
        "info", help="what a saved model is: task, labels, encoder, training data, dev scores", formatter_class=formatter
    )
    i.add_argument("model", help="a model directory")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.add_argument(
        "--label-studio-config",
        action="store_true",
        help="print a Label Studio labelling config for the model's labels (a new project's start)",
    )
    add_common(i, device=False)
    i.set_defaults(func=run)
    return i


def report(path) -> dict:
    """The model's task, labels, settings and training information, checked as loading checks them."""
    from gplinker import model_dir
    from gplinker.extractor import task_and_settings

    config = model_dir.read_config(path, registry().names())
    task, settings = task_and_settings(path, config, registry())
    info = config.get("info") if isinstance(config.get("info"), dict) else {}
    specs = task.head_specs()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    out = {
        "model": str(path),
        "task": config["task"],
        **task.labels_summary(),
        **{k: v for k, v in task.config().items() if not isinstance(v, list)},
        "encoder": info.get("encoder"),
        "max_length": settings.max_length,
        "stride": settings.stride,
        "head_type": settings.head_type,
        "head_size": settings.head_size,
        "label_sharing": settings.label_sharing if any(s.groups for s in specs) else None,
        "link_threshold": settings.link_threshold if any(s.axes != "span" for s in specs) else None,
        "temperature": settings.temperature,
        "train_file": info.get("train_file"),
        "train_documents": info.get("train_documents"),
        "dev_file": info.get("dev_file"),
        "dev_scores": info.get("dev_scores"),
        "best_epoch": info.get("best_epoch"),
        "best_step": info.get("best_step"),
        "init_from": info.get("init_from"),
        "size_mb": round(size / 2**20, 1),
        "gplinker_version": config.get("gplinker_version"),
    }
    return {k: v for k, v in out.items() if v is not None}


def label_studio_config(path) -> str:
    """The labelling config of a Label Studio project for the model's labels, relations and events."""
    from gplinker import model_dir
    from gplinker.extractor import task_and_settings
    from gplinker.label_studio import LabelConfig

    task, _ = task_and_settings(path, model_dir.read_config(path, registry().names()), registry())
    return LabelConfig.for_schema(task.schema()).to_xml()


def run(args: argparse.Namespace) -> int:
    if args.label_studio_config:
        print(label_studio_config(model_path(args.model)), end="")
        return 0
    rep = report(model_path(args.model))
    if args.json:
        print(json.dumps(rep, ensure_ascii=False, indent=2))
        return 0
    for k, v in rep.items():
        if k == "dev_scores":
            print("dev scores:")
            for level, s in v.items():
                print(f"  {level:<18} P {s['precision']:.4f}  R {s['recall']:.4f}  F1 {s['f1']:.4f}")
        elif isinstance(v, (list, dict)):
            shown = json.dumps(v, ensure_ascii=False)
            print(f"{k}: {shown if len(shown) < 400 else shown[:400] + ' ...'}")
        else:
            print(f"{k}: {v}")
    return 0
