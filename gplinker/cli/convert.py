"""``gplinker convert``: a dataset from any format gplinker reads into gplinker JSONL, a Label
Studio task list (with annotations, and the project's labelling config) or doccano JSONL."""

from __future__ import annotations

import argparse

from gplinker.cli.common import UsageError, add_common, existing_file, messages, registry, setup_logging, writable_file

TARGETS = ("jsonl", "label-studio", "doccano")
ORDER = ("relation", "event", "ner")  # a format name several tasks read: the reader that keeps the most wins


def add_parser(sub, formatter, formats: str) -> argparse.ArgumentParser:
    c = sub.add_parser(
        "convert",
        help="convert a dataset between formats (gplinker JSONL, Label Studio, doccano, and every format gplinker reads)",
        formatter_class=formatter,
        description=f"Formats read, by task: {formats}.",
    )
    c.add_argument("--input", required=True, help="the dataset file")
    c.add_argument("--from", dest="source", default="auto", help="its format (auto detects; see the list above)")
    c.add_argument("--to", dest="target", required=True, choices=TARGETS, help="the format to write")
    c.add_argument("--output", required=True, help="the converted file (-: standard output)")
    c.add_argument("--task", default=None, help="read with this task's readers (none: every task's, the first that knows --from)")
    c.add_argument("--label-config", help="label-studio: also write the project's labelling config (XML) here")
    add_common(c, device=False)
    c.set_defaults(func=run)
    return c


def formats(task: str | None) -> list:
    """(format name, Format) of ``task``, or of every task in :data:`ORDER` (a name can repeat:
    each task's sniffer is tried, and the first that accepts the file decides)."""
    reg = registry()
    if task is not None:
        if task not in reg:
            raise UsageError(f"--task {task}: unknown task; choose one of {', '.join(reg.names())}")
        return list(reg[task].formats.items())
    names = [n for n in ORDER if n in reg] + [n for n in reg.names() if n not in ORDER]
    return [item for name in names for item in reg[name].formats.items()]


def read(path, source: str, task: str | None):
    """(documents, format name, Label Studio read report or None)."""
    from gplinker import label_studio
    from gplinker.io import read_text

    known = formats(task)
    if source == "auto":
        head = read_text(path)[:20000]
        found = next(((name, f) for name, f in known if f.sniff is not None and f.sniff(head)), None)
        if found is None:
            names = ", ".join(dict.fromkeys(name for name, _ in known))
            raise UsageError(f"--input {path}: could not detect the dataset format — pass --from with one of: {names}")
        source = found[0]
    fmt = next((f for name, f in known if name == source), None)
    if fmt is None:
        raise UsageError(f"--from {source}: unknown format; choose one of: auto, {', '.join(dict.fromkeys(n for n, _ in known))}")
    if source == "label-studio":
        docs, report = label_studio.read_export_report(path)
        return docs, source, report
    return fmt.read(path), source, None


def run(args: argparse.Namespace) -> int:
    src = existing_file(args.input, "--input")
    taken: dict[str, str] = {}
    writable_file(args.output, "--output", (src,), taken)
    if args.label_config:
        if args.target != "label-studio":
            raise UsageError("--label-config is written with --to label-studio only")
        writable_file(args.label_config, "--label-config", (src,), taken)
    setup_logging(None, args.verbose)
    from gplinker import atomic, doccano, label_studio
    from gplinker.io import write_json_array, write_jsonl

    docs, source, report = read(src, args.source, args.task)
    out = messages(args.output, args.label_config)
    if args.target == "doccano":
        with_events = next((d for d in docs if d.events), None)
        if with_events is not None:
            raise UsageError(
                f"{src}: document {with_events.id or ''} has events, which doccano cannot hold — convert with --to label-studio"
            )
        n = write_jsonl(args.output, (doccano.record_of(d) for d in docs))
    elif args.target == "label-studio":
        config = label_studio.LabelConfig.for_schema(label_studio.schema_of(docs))
        tasks, _ = label_studio.tasks_of(docs, config)
        n = write_json_array(args.output, tasks)
        if args.label_config:
            atomic.write_text(args.label_config, config.to_xml())
    else:
        n = write_jsonl(args.output, (d.to_json() for d in docs))
    print(f"{n} documents read from {src} (format {source}) and written to {args.output} as {args.target}", file=out)
    for line in report.lines() if report is not None else []:
        print(f"  {line}", file=out)
    if args.label_config:
        print(f"labelling config written to {args.label_config}", file=out)
    return 0
