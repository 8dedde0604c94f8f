"""``gplinker push``: upload a saved model and its card to a Hugging Face Hub repository."""

from __future__ import annotations

import argparse

from gplinker.cli.card import add_card_options, build
from gplinker.cli.common import UsageError, add_common, model_path


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "push", help="upload a model with its card to the Hugging Face Hub (hf auth login first)", formatter_class=formatter
    )
    p.add_argument("model", help="a model directory")
    p.add_argument("--repo-id", required=True, help="ORG/NAME of the hub repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--message", default=None, help="the commit message")
    add_card_options(p)
    add_common(p, device=False)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from gplinker import hub

    if not hub.REPO_ID.match(args.repo_id):
        raise UsageError(f"--repo-id {args.repo_id}: not a repository id — use ORG/NAME (letters, digits, - _ .)")
    path = model_path(args.model)
    card = build(path, args, args.repo_id)
    url = hub.push(path, args.repo_id, card, private=args.private, message=args.message)
    print(f"pushed {path} to {args.repo_id}: {url}")
    print(f"load it with: gplinker predict --model {args.repo_id} ...  (set a license in the card's metadata)")
    return 0
