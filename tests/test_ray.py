"""predict --engine ray on a local 2-CPU Ray: the same records as single-process predict, one per
input line, in order, errors per record; folders and Parquet inputs."""

import json
import os

import pytest
from conftest import DATA, read

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from gplinker import cli  # noqa: E402
from gplinker.tasks import default_registry  # noqa: E402


@pytest.fixture(scope="module")
def model(trained_ner):
    return trained_ner[0]


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x]


def test_ray_output_equals_single_process_predict(model, local_ray, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    texts = read("ner", DATA / "zh_dev.jsonl") + read("ner", DATA / "zh_train.jsonl")[:6]
    jsonl = inputs / "a.jsonl"
    jsonl.write_bytes(
        b"\n".join(
            [json.dumps({"id": f"d{k}", "text": d.text, "source": "x"}, ensure_ascii=False).encode() for k, d in enumerate(texts)]
            + [b"", b'{"id": "bad", "body": 1}', b'{"text": "\xff\xfe"}', "王芳在杭州。".encode()]
        )
        + b"\n"
    )
    txt = inputs / "b.txt"
    txt.write_text("\n".join(d.text for d in texts[:5]) + "\n\n" + "李娜访问了百度公司。" * 30 + "\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = cli.main(
        [
            "predict",
            "--engine",
            "ray",
            "--model",
            str(model),
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--actors",
            "2",
            "--threads-per-actor",
            "1",
        ]
    )
    assert rc == 0
    for src in (jsonl, txt):
        local = tmp_path / f"local_{src.stem}.jsonl"
        assert cli.main(["predict", "--model", str(model), "--input", str(src.resolve()), "--output", str(local)]) == 0
        want, got = _lines(local), _lines(out / f"{src.stem}.jsonl")
        assert len(got) == len(src.read_bytes().rstrip(b"\n").split(b"\n"))  # one record per input line
        assert got == want
        assert sum(len(r.get("entities", [])) for r in got) > 0  # not a comparison of empty records
    errors = [r for r in _lines(out / "a.jsonl") if "error" in r]
    assert [r["line"] for r in errors] == [len(texts) + k for k in (1, 2, 3, 4)]  # empty, no text, bad UTF-8, not JSON


def test_ray_reads_parquet_and_gives_each_row_its_record(model, local_ray, tmp_path):
    import pandas as pd

    rows = [{"id": f"p{k}", "text": t} for k, t in enumerate(["王芳在杭州的小米公司工作。", "", "李娜访问了百度公司。"])]
    pd.DataFrame(rows).to_parquet(tmp_path / "docs.parquet")
    (tmp_path / "same.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert (
        cli.main(
            [
                "predict",
                "--engine",
                "ray",
                "--model",
                str(model),
                "--input",
                str(tmp_path / "docs.parquet"),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert (
        cli.main(
            ["predict", "--model", str(model), "--input", str(tmp_path / "same.jsonl"), "--output", str(tmp_path / "l.jsonl")]
        )
        == 0
    )
    got = _lines(tmp_path / "out" / "docs.jsonl")
    assert [r["id"] for r in got] == ["p0", "p1", "p2"]
    assert [{k: v for k, v in r.items()} for r in got] == _lines(tmp_path / "l.jsonl")


def test_ray_input_mistakes_are_one_line_errors(model, tmp_path, capsys):
    rc = cli.main(
        [
            "predict",
            "--engine",
            "ray",
            "--model",
            str(model),
            "--input",
            str(tmp_path / "missing"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "no such file or folder" in capsys.readouterr().err
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
    rc = cli.main(["predict", "--engine", "ray", "--model", str(model), "--input", str(tmp_path), "--output", str(tmp_path)])
    assert rc == 2 and "overwrite inputs" in capsys.readouterr().err


def test_ray_predictor_loads_and_predicts_in_one_thread(model, monkeypatch):
    """Ray Data builds the actor's predictor on one thread and calls it from another: the predictor
    runs both in its own model thread (two threads running torch cost ~20% on 2 cores)."""
    import threading

    import numpy as np

    import gplinker.combine as combine
    from gplinker import ray_engine
    from gplinker.extractor import Extractor

    seen = {"load": set(), "predict": set()}
    real_load = Extractor.from_pretrained.__func__

    def load(cls, *a, **k):
        seen["load"].add(threading.get_ident())
        return real_load(cls, *a, **k)

    monkeypatch.setattr(Extractor, "from_pretrained", classmethod(load))
    real_records = combine.predict_records

    def records(*a, **k):
        seen["predict"].add(threading.get_ident())
        return real_records(*a, **k)

    monkeypatch.setattr(combine, "predict_records", records)
    predictor = ray_engine.Predictor(str(model), device="cpu", registry=default_registry())
    line = json.dumps({"text": "王芳在北京。"}).encode()
    batch = {
        "source": np.array(["in.jsonl"], dtype=object),
        "line": np.array([1]),
        "raw": np.array([line], dtype=object),
        "format": np.array(["jsonl"], dtype=object),
    }
    out = {}
    caller = threading.Thread(target=lambda: out.update(predictor(batch)))  # as Ray Data calls it: another thread
    caller.start()
    caller.join()
    assert json.loads(out["record"][0])["text"] == "王芳在北京。"
    assert len(seen["load"]) == 1 and seen["load"] == seen["predict"]
    assert threading.get_ident() not in seen["load"] and caller.ident not in seen["load"]


def test_the_ray_engine_honours_batch_size(model, monkeypatch, tmp_path):
    """predict --engine ray --batch-size N reaches every actor's forward passes."""
    from gplinker import cli, ray_engine

    seen = {}

    def run(model, inputs, out, **kw):
        seen.update(kw)
        return {"records": 0, "predicted": 0, "failed": 0}

    monkeypatch.setattr(ray_engine, "run", run)
    src = tmp_path / "in.txt"
    src.write_text("王芳在北京。\n")
    assert (
        cli.main(
            [
                "predict",
                "--engine",
                "ray",
                "--model",
                str(model),
                "--input",
                str(src),
                "--output",
                str(tmp_path / "o"),
                "--batch-size",
                "7",
            ]
        )
        == 0
    )
    assert seen["forward_batch_size"] == 7
    captured = {}
    monkeypatch.setattr(ray_engine.Predictor, "__init__", lambda self, **kw: captured.update(kw) or None)

    class Data:
        def map_batches(self, fn, fn_constructor_kwargs, **kw):
            fn(**fn_constructor_kwargs)
            return self

    ray_engine.extract_dataset(Data(), str(model), forward_batch_size=7)
    assert captured["batch_size"] == 7
