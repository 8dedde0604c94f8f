"""Every Python example of the README and docs/guide.md runs, as written but for three things a
test cannot have: the encoder (the tiny random one instead of "minilm-l6"), the number of training
steps (2 instead of 300) and the network (the server example talks to the app in-process)."""

import re
import shutil
import sys
import types
from pathlib import Path

import pytest
from conftest import DATA, ROOT

FILES = [ROOT / "README.md", ROOT / "docs" / "guide.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


EXAMPLES = [(f"{p.relative_to(ROOT)}#{k + 1}", code) for p in FILES for k, code in enumerate(python_blocks(p))]


def fake_httpx(model_dir: Path) -> types.ModuleType:
    """``httpx.post`` answered by the server's app in-process (FastAPI's TestClient)."""
    from fastapi.testclient import TestClient

    from gplinker.combine import Pipeline
    from gplinker.server import create_app
    from gplinker.tasks import load

    module = types.ModuleType("httpx")

    def post(url: str, json=None):
        with TestClient(create_app(Pipeline([(load(model_dir, device="cpu"), "ner")])), base_url="http://127.0.0.1") as c:
            return c.post("/" + url.split("/", 3)[3], json=json)

    module.post = post
    return module


def test_the_docs_have_examples():
    assert len(EXAMPLES) >= 5 and all("gplinker" in code or "httpx" in code for _, code in EXAMPLES)


@pytest.mark.parametrize("where, code", EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_python_example_runs(where, code, trained_ner, tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained_ner[0], tmp_path / "runs" / "quickstart" / "ner" / "model")
    shutil.copy(DATA / "en_train.jsonl", tmp_path / "train.jsonl")
    shutil.copy(DATA / "en_dev.jsonl", tmp_path / "dev.jsonl")
    (tmp_path / "conll04").mkdir()
    shutil.copy(ROOT / "data" / "relation" / "spert_sample.json", tmp_path / "conll04" / "train.json")
    if "httpx" in code:
        pytest.importorskip("fastapi")
        monkeypatch.setitem(sys.modules, "httpx", fake_httpx(tmp_path / "runs" / "quickstart" / "ner" / "model"))
    code = code.replace('"minilm-l6"', repr(str(tiny_encoder))).replace("max_steps=300", "max_steps=2")
    exec(compile(code, where, "exec"), {"__name__": "__example__"})
    if "train(extractor" in code:  # the training example saved its model
        assert (tmp_path / "runs" / "mine" / "model" / "gplinker.json").is_file()
    if "write_jsonl(" in code:  # the conversion example wrote one canonical record per source record
        import json

        source = json.loads((tmp_path / "conll04" / "train.json").read_text(encoding="utf-8"))
        lines = (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(source) and all("relations" in json.loads(x) or "entities" in json.loads(x) for x in lines)
