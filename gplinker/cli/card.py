"""``gplinker card``: the model card (README.md with hub metadata) of a saved model."""

from __future__ import annotations

import argparse

from gplinker.cli.common import STDOUT, add_common, messages, model_name, model_path, registry, writable_file


def add_card_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--language", nargs="+", default=[], help="languages of the model's texts (ISO 639-1: en, zh ...)")
    p.add_argument("--dataset", nargs="+", default=[], help="hub dataset ids or names of the training data")


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    c = sub.add_parser(
        "card", help="write a model's card (README.md with hub metadata: labels, scores, use, limits)", formatter_class=formatter
    )
    c.add_argument("model", help="a model directory")
    c.add_argument("--output", default=STDOUT, help="the card's file (default: standard output)")
    c.add_argument("--repo-id", help="the hub repository the card will live in (used in its usage snippet)")
    add_card_options(c)
    add_common(c, device=False)
    c.set_defaults(func=run)
    return c


def build(path, args: argparse.Namespace, repo_id: str | None) -> str:
    """The card of the model at ``path`` (checked as loading checks it, no weights loaded)."""
    from gplinker import model_dir
    from gplinker.extractor import task_and_settings
    from gplinker.model_card import card

    config = model_dir.read_config(path, registry().names())
    task, _ = task_and_settings(path, config, registry())
    name = repo_id.split("/", 1)[1] if repo_id else model_name(args.model)
    return card(config, task, name, repo_id, args.language, args.dataset)


def run(args: argparse.Namespace) -> int:
    path = model_path(args.model)
    writable_file(args.output, "--output")
    text = build(path, args, args.repo_id)
    from gplinker import atomic

    atomic.write_text(args.output, text)
    if args.output != STDOUT:
        print(f"model card written to {args.output}", file=messages(args.output))
    return 0
