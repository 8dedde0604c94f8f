"""``gplinker tune`` and ``train --seeds``: the search, its resumption after a crash, early
stopping, its outputs, the Ray Tune backend, and seeds reported as mean and deviation."""

import csv
import json
import math

import pytest
from conftest import DATA

from gplinker import cli, tuning

optuna = pytest.importorskip("optuna")

TINY = ["--max-length", "48", "--stride", "8", "--head-size", "16", "--device", "cpu", "--batch-size", "8"]


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def peak(params):
    """A synthetic dev score, best at lr = 1e-3 and the standard head."""
    return 1.0 - abs(math.log10(params["lr"]) + 3) / 3 - (0.0 if params["head_type"] == "standard" else 0.2)


SPACE = tuning.SearchSpace(
    (
        tuning.Param("lr", "float", 1e-5, 1e-1, log=True),
        tuning.Param("head_type", "categorical", choices=("efficient", "standard")),
    )
)


def test_cli_search_trains_best_recipe(tiny_encoder, tmp_path, capsys):
    """Four real trials on the tiny encoder: every trial in the table, the best one's model (and
    only it) kept and copied to OUTPUT/model, the plot drawn, the recipe's score is the best row's."""
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps(
            {
                "lr": {"low": 1e-4, "high": 1e-2, "log": True},
                "head_type": {"choices": ["efficient", "standard"]},
                "warmup_ratio": {"choices": [0.0, 0.25]},
            }
        )
    )
    out = tmp_path / "search"
    args = ["tune", "ner", "--train", DATA / "zh_train.jsonl", "--dev", DATA / "zh_dev.jsonl", "--encoder", tiny_encoder]
    rc = cli.main([str(a) for a in [*args, "--output", out, "--budget", "8", "--trials", "4", "--space", space, *TINY]])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    table = rows(out / "trials.csv")
    assert [r["trial"] for r in table] == ["0", "1", "2", "3"]
    assert {r["state"] for r in table} <= {"complete", "pruned"}
    best = json.loads((out / "best.json").read_text())
    scores = [float(r["score"]) for r in table if r["state"] == "complete"]
    assert best["best"]["score"] == pytest.approx(max(scores))
    assert (out / "tune.png").stat().st_size > 1000
    kept = [d.name for d in (out / "trials").iterdir() if (d / "model").is_dir()]
    assert kept == [f"{best['best']['number']:04d}"]
    from gplinker.tasks import load

    model = load(out / "model", "cpu")
    params = best["best"]["params"]
    assert model.settings.head_type == params["head_type"]
    command = model.info["command"]  # the recipe as the train command that reproduces it
    assert command.startswith("gplinker train ner ") and f"--head {params['head_type']}" in command
    assert f"--warmup-ratio {params['warmup_ratio']}" in command and "--budget" not in command
    for r in table:  # every trial trained with its own settings
        config = json.loads((out / "trials" / f"{int(r['trial']):04d}" / "train_summary.json").read_text())["config"]
        assert config["warmup_ratio"] == float(r["warmup_ratio"]) and config["lr"] == pytest.approx(float(r["lr"]))
        assert config["max_steps"] == 8
    assert f"best: trial {best['best']['number']}" in printed


def test_task_switch_is_searched_and_recorded(tiny_encoder, tmp_path):
    """A relation search turns ``link_rope`` on and off; the kept model has the best trial's
    setting and its recorded train command says it; relation's default space includes it."""
    from gplinker.tasks import RelationTask, load

    assert "link_rope" in tuning.SearchSpace.default(400, RelationTask.searched).names()
    assert "link_rope" not in tuning.SearchSpace.default(400).names()
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"link_rope": {"choices": [False, True]}, "lr": {"low": 1e-3, "high": 1e-2}}))
    rel = DATA.parent / "relation"
    out = tmp_path / "search"
    args = ["tune", "relation", "--train", rel / "en_train.jsonl", "--dev", rel / "en_dev.jsonl", "--encoder", tiny_encoder]
    rc = cli.main([str(a) for a in [*args, "--output", out, "--budget", "4", "--trials", "2", "--space", space, *TINY]])
    assert rc == 0
    table = rows(out / "trials.csv")
    assert len(table) == 2 and {r["link_rope"] for r in table} <= {"True", "False"}
    best = json.loads((out / "best.json").read_text())["best"]
    model = load(out / "model", "cpu")
    assert model.task.link_rope is best["params"]["link_rope"]
    assert model.model.heads["heads"].use_rope is best["params"]["link_rope"]
    assert ("--link-rope" in model.info["command"].split()) is best["params"]["link_rope"]


def test_search_resumes_after_a_crash(tmp_path):
    """A search killed during trial 2 goes on when run again: the interrupted settings are run
    again, the budget counts the trials done before, the total time includes the first run."""
    seen = []

    def crashing(params, trial_dir, report):
        seen.append(params)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return peak(params)

    with pytest.raises(KeyboardInterrupt):
        tuning.tune(crashing, SPACE, 6, tmp_path)
    interrupted = seen[-1]
    again = []

    def objective(params, trial_dir, report):
        again.append(params)
        return peak(params)

    result = tuning.tune(objective, SPACE, 6, tmp_path)
    assert again[0] == interrupted  # the trial that was running is run again first
    assert len(again) == 4  # 2 were done; 6 in all
    states = [r.state for r in result.trials]
    assert states.count("complete") == 6 and states.count("failed") == 1
    assert result.best.score == max(r.score for r in result.trials if r.score is not None)
    assert len(rows(tmp_path / "trials.csv")) == 7


def test_poor_trials_stop_early(tmp_path):
    """Trials that report a dev score below the median of earlier trials at the same step are stopped."""
    calls = []

    def objective(params, trial_dir, report):
        score = peak(params)
        for step in (1, 2, 3):
            report(step, score * step / 3)
            calls.append(step)
        return score

    result = tuning.tune(objective, SPACE, 12, tmp_path)
    pruned = [r for r in result.trials if r.state == "pruned"]
    assert pruned, [r.state for r in result.trials]
    assert all(r.score is None and r.reported for r in pruned)
    assert len(calls) < 12 * 3


def test_space_file_mistakes_name_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "space.json"
    args = ["tune", "ner", "--train", DATA / "zh_train.jsonl", "--dev", DATA / "zh_dev.jsonl", "--output", tmp_path / "o"]
    args += ["--budget", "4", "--space", bad]
    for text, says in [
        ('{"learning_rate": {"low": 1, "high": 2}}', "key 'learning_rate': not a training setting; use one of"),
        ('{"lr": {"low": 0, "high": 1e-3, "log": true}}', "key 'lr': need low < high (above 0 on a log scale)"),
        ('{"lr": [1, 2]}', "key 'lr': give a range"),
        ('{"lr": {"low": 1e-5,\n "high": }}', "line 2: not valid JSON"),
        ('{"max_steps": {"choices": [4, 8]}}', "max_steps goes above --budget 4"),
    ]:
        bad.write_text(text)
        rc = cli.main([str(a) for a in args])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and "Traceback" not in err, err
        assert str(bad) in err or "max_steps" in says


def test_ray_tune_backend(tmp_path, monkeypatch):
    """The same search through Ray Tune: every trial recorded with its settings and score."""
    pytest.importorskip("ray.tune")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

    def objective(params, trial_dir, report):
        score = 1.0 - abs(math.log10(params["lr"]) + 3) / 3 - (0.0 if params["head_type"] == "standard" else 0.2)
        report(1, score / 2)
        trial_dir.mkdir(parents=True, exist_ok=True)
        return score

    import ray

    try:
        result = tuning.tune(objective, SPACE, 3, tmp_path, backend="ray")
    finally:
        ray.shutdown()
    assert len(result.trials) == 3
    complete = [r for r in result.trials if r.state == "complete"]
    assert complete and all(r.state == "pruned" and r.reported for r in result.trials if r not in complete)
    for r in complete:
        assert r.score == pytest.approx(peak(r.params)) and r.reported == {1: pytest.approx(r.score / 2)}
    assert result.best.score == max(r.score for r in complete)
    assert len(rows(tmp_path / "trials.csv")) == 3


def test_train_seeds_reports_mean_and_deviation(tiny_encoder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "ner", "--train", DATA / "zh_train.jsonl", "--dev", DATA / "zh_dev.jsonl", "--encoder", tiny_encoder]
    rc = cli.main([str(a) for a in [*args, "--output", out, "--epochs", "2", "--seeds", "2", "--seed", "7", *TINY]])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    report = json.loads((out / "seeds.json").read_text())
    assert report["seeds"] == [7, 8]
    per_seed = [json.loads((out / "seeds" / f"seed-{s}" / "metrics.json").read_text()) for s in (7, 8)]
    f1s = [m["entities"]["f1"] for m in per_seed]
    got = report["summary"]["entities"]["f1"]
    assert got["values"] == f1s
    assert got["mean"] == pytest.approx(sum(f1s) / 2)
    assert got["std"] == pytest.approx(abs(f1s[0] - f1s[1]) / math.sqrt(2))
    assert (out / "model" / "gplinker.json").is_file()
    assert json.loads((out / "metrics.json").read_text()) == per_seed[[7, 8].index(report["best_seed"])]
    assert "mean ± standard deviation" in printed and "entities" in printed


def test_train_seeds_resume_keeps_finished_seeds(tiny_encoder, tmp_path, capsys):
    """An interrupted ``--seeds`` command run again with ``--resume``: the finished seed is kept as it
    was, the unfinished one goes on from its checkpoint to the same scores, a seed not started yet is
    trained; without --resume it is refused, and so is a finished seed trained with other settings."""
    out = tmp_path / "run"
    args = ["train", "ner", "--train", DATA / "zh_train.jsonl", "--dev", DATA / "zh_dev.jsonl", "--encoder", tiny_encoder]
    base = [str(a) for a in [*args, "--output", out, "--epochs", "2", "--seed", "7", "--save-every", "2", *TINY]]
    assert cli.main([*base, "--seeds", "2"]) == 0
    first = json.loads((out / "seeds.json").read_text())
    kept = out / "seeds" / "seed-7" / "model" / "heads.safetensors"
    stamp = kept.stat().st_mtime_ns
    (out / "seeds" / "seed-8" / "train_summary.json").unlink()  # seed 8 stopped after its last checkpoint
    capsys.readouterr()

    assert cli.main([*base, "--seeds", "3"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*base, "--seeds", "3", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "seed 7: finished by the earlier command, kept" in printed
    assert "seed 8: trained" in printed and "seed 9: trained" in printed
    assert kept.stat().st_mtime_ns == stamp
    report = json.loads((out / "seeds.json").read_text())
    assert report["seeds"] == [7, 8, 9]
    assert [r["metrics"] for r in report["runs"][:2]] == [r["metrics"] for r in first["runs"]]
    log = (out / "train.log").read_text()
    assert "resumed from" in log and str(out / "seeds" / "seed-8" / "checkpoint") in log

    for other, named in ((["--lr", "0.01"], "lr 2e-05 there, 0.01 now"), (["--head-size", "32"], "head_size 16 there")):
        assert cli.main([*base, "--seeds", "4", "--resume", *other]) == 2
        err = capsys.readouterr().err
        assert "other settings" in err and named in err and "seed-7" in err and "Traceback" not in err
        assert not (out / "seeds" / "seed-10").exists()  # refused before any seed trained
