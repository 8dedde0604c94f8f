"""A model card for a saved model: the README.md a hub repository shows, with YAML metadata that
the hub reads (``library_name: gplinker``, languages, datasets, ``model-index`` with the dev
scores of every level) and what a user needs: labels, encoder, windows, training, scores,
calibration, use and limits, and how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from gplinker.task import Task

TASK_TYPES = {"ner": "token-classification", "relation": "relation-extraction", "event": "event-extraction"}
TASK_NAMES = {"ner": "Named entity recognition", "relation": "Relation extraction", "event": "Event extraction"}


def _name(path: str) -> str:
    return Path(str(path).replace("\\", "/")).name if path else ""


def metadata(config: dict[str, Any], name: str, languages: Sequence[str] = (), datasets: Sequence[str] = ()) -> str:
    """The card's YAML front matter (without the ``---`` lines), written by huggingface_hub."""
    from huggingface_hub import EvalResult, ModelCardData

    info = config.get("info") or {}
    task = config["task"]
    dataset = datasets[0] if datasets else _name(info.get("dev_file") or info.get("train_file") or "") or "unknown"
    results = [
        EvalResult(
            task_type=TASK_TYPES.get(task, task),
            task_name=TASK_NAMES.get(task, task),
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="dev",
            metric_type=metric,
            metric_name=f"{level} {metric}",
            metric_value=round(float(scores[metric]), 4),
        )
        for level, scores in (info.get("dev_scores") or {}).items()
        for metric in ("precision", "recall", "f1")
        if metric in scores
    ]
    data = ModelCardData(
        library_name="gplinker",
        language=list(languages) or None,
        datasets=list(datasets) or None,
        tags=["gplinker", "globalpointer", "information-extraction", task],
        pipeline_tag="token-classification" if task == "ner" else None,
        model_name=name,
        eval_results=results or None,
    )
    return data.to_yaml()


def _labels(task: Task) -> list[str]:
    schema = task.schema()
    lines = []
    if schema.entities:
        lines.append(f"- **entity labels** ({len(schema.entities)}): " + ", ".join(f"`{x}`" for x in schema.entities))
    if schema.relations:
        lines.append(f"- **predicates** ({len(schema.relations)}): " + ", ".join(f"`{x}`" for x in schema.relations))
    for etype, roles in schema.events:
        lines.append(f"- **event `{etype}`**: trigger, " + ", ".join(f"`{r}`" for r in roles))
    return lines


def _scores(info: dict[str, Any]) -> list[str]:
    scores = info.get("dev_scores") or {}
    if not scores:
        return ["No dev scores: the model was trained without `--dev`."]
    rows = ["| level | precision | recall | F1 |", "|---|---:|---:|---:|"]
    rows += [f"| {lv} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} |" for lv, s in scores.items()]
    where = f" (`{_name(info.get('dev_file') or '')}`" + (
        f", {info['dev_documents']} documents)" if info.get("dev_documents") else ")"
    )
    return [f"Scores on the dev data{where}, measured when the model was chosen:", "", *rows]


def _model(config: dict[str, Any], info: dict[str, Any]) -> list[str]:
    temperature = config.get("temperature", 1.0)
    calibrated = (
        f"temperature {temperature:g} fitted on labelled data (`gplinker calibrate --apply`)"
        if temperature != 1.0
        else "not calibrated (temperature 1)"
    )
    link = config.get("link_threshold")
    return [
        f"- encoder: `{_name(info.get('encoder') or '') or 'unknown'}`; heads: {config.get('head_type')} GlobalPointer, size {config.get('head_size')}",
        f"- windows: {config.get('max_length')} tokens, {config.get('stride')} shared between consecutive windows of a long text",
        *([f"- link threshold: {link:+g} (chosen on dev)"] if link not in (None, 0, 0.0) else []),
        f"- scores: {calibrated}",
        f"- saved by gplinker {config.get('gplinker_version', '?')}, model format {config.get('format_version', '?')}",
    ]


def _training(info: dict[str, Any]) -> list[str]:
    docs = f" ({info['train_documents']} documents)" if info.get("train_documents") else ""
    return [
        f"- data: `{_name(info.get('train_file') or '') or 'unknown'}`{docs}",
        *(
            [f"- kept: epoch {info.get('best_epoch')}, step {info.get('best_step')} (best dev score)"]
            if info.get("best_step")
            else []
        ),
        *([f"- fine-tuned from `{_name(info['init_from'])}`"] if info.get("init_from") else []),
        *(["- command:", "", "```bash", info["command"], "```"] if info.get("command") else []),
    ]


def _use(where: str) -> list[str]:
    return [
        "```bash",
        "pip install gplinker",
        f"gplinker predict --model {where} --input texts.txt --output predictions.jsonl",
        "```",
        "",
        "```python",
        "from gplinker.tasks import load",
        f'model = load("{where}")',
        'print(model.predict(["your text here"])[0].to_json())',
        "```",
        "",
        "Loading checks every file against the fingerprints saved with the model and runs no code from the repository.",
    ]


LIMITS = [
    "- Extracts only the labels listed above, as they were annotated in the training data; other kinds are not found.",
    "- Scores were measured on the dev data named above; expect lower scores on text unlike it (other domains, "
    "languages, genres), and measure on your own labelled sample before relying on it.",
    "- Probabilities are the model's own; check their calibration on your data (`gplinker calibrate`).",
    "- Not for decisions about people without human review.",
]


def card(
    config: dict[str, Any],
    task: Task,
    name: str,
    repo_id: str | None = None,
    languages: Sequence[str] = (),
    datasets: Sequence[str] = (),
) -> str:
    """The whole README.md of a model (front matter and body)."""
    info = config.get("info") or {}
    kind = TASK_NAMES.get(config["task"], config["task"]).lower()
    intro = (
        f"A gplinker model for **{kind}**: one transformer encoder, "
        "GlobalPointer heads, set-based decoding; every item comes with character offsets (end exclusive) and a probability."
    )
    parts = [
        ["---", metadata(config, name, languages, datasets).strip(), "---", "", f"# {name}", "", intro],
        ["## Labels", "", *_labels(task)],
        ["## Model", "", *_model(config, info)],
        ["## Training", "", *_training(info)],
        ["## Scores", "", *_scores(info)],
        ["## Use", "", *_use(repo_id or name)],
        ["## Intended use and limits", "", *LIMITS, "", "License: set by the model's author in the metadata above (`license:`)."],
    ]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"
