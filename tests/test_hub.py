"""Models on the Hugging Face Hub: pushed with a card and loaded back by repository id through
huggingface_hub's own code (against a local stand-in of the hub's HTTP API), then from the cache
with the network off; a hostile cached repository is refused like a hostile folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_hub import FakeHub

REPO = "gplinker-test/tiny-ner"


def gplinker(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gplinker", *args], capture_output=True, text=True, env=env, timeout=300)


def hub_env(tmp_path: Path, endpoint: str | None, offline: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_TOKEN="hf_fake_token_for_tests", HF_HUB_DISABLE_TELEMETRY="1",
               OMP_NUM_THREADS="1", HF_HUB_DISABLE_XET="1")  # fmt: skip
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.fixture(scope="module")
def pushed(trained_ner, tmp_path_factory):
    """(fake hub's stored files, the cache folder, the texts file, the local model's predictions)."""
    model, docs = trained_ner
    tmp = tmp_path_factory.mktemp("hub")
    texts = tmp / "texts.txt"
    texts.write_text("\n".join(d.text for d in docs) + "\n", encoding="utf-8")
    with FakeHub() as hub:
        env = hub_env(tmp, hub.url)
        r = gplinker(["push", str(model), "--repo-id", REPO, "--language", "zh", "--dataset", "gplinker-examples"], env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"pushed {model} to {REPO}" in r.stdout
        r = gplinker(
            ["predict", "--model", REPO, "--input", str(texts), "--output", str(tmp / "online.jsonl"), "--device", "cpu"], env
        )
        assert r.returncode == 0, r.stderr[-2000:]
        files = dict(hub.repos[REPO])
    r = gplinker(
        ["predict", "--model", str(model), "--input", str(texts), "--output", str(tmp / "local.jsonl"), "--device", "cpu"], env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return files, tmp, texts


def test_push_uploads_every_file_and_a_card_with_the_metrics(pushed, trained_ner):
    files, _, _ = pushed
    model = trained_ner[0]
    local = {p.relative_to(model).as_posix(): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    assert {k: v for k, v in files.items() if k != "README.md"} == local
    text = files["README.md"].decode()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "gplinker" and meta["language"] == ["zh"] and meta["datasets"] == ["gplinker-examples"]
    assert "license" not in meta  # left to the model's author
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    config = json.loads((model / "gplinker.json").read_text())
    assert metrics["entities f1"] == round(config["info"]["dev_scores"]["entities"]["f1"], 4) == 1.0
    for part in ("## Labels", "## Scores", "## Intended use and limits", f'load("{REPO}")', "gplinker predict --model " + REPO):
        assert part in text


def test_loading_by_repository_id_online_then_offline_from_the_cache(pushed):
    _, tmp, texts = pushed
    local = (tmp / "local.jsonl").read_text()
    assert (tmp / "online.jsonl").read_text() == local
    env = hub_env(tmp, "http://127.0.0.1:9", offline=True)  # the hub is gone: the cache alone answers
    r = gplinker(
        ["predict", "--model", REPO, "--input", str(texts), "--output", str(tmp / "offline.jsonl"), "--device", "cpu"], env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp / "offline.jsonl").read_text() == local
    snapshot = next((tmp / "hf" / "hub" / "models--gplinker-test--tiny-ner" / "snapshots").iterdir())
    assert (snapshot / "gplinker.json").is_symlink()  # huggingface_hub's own layout: links into blobs/

    code = f"from gplinker.tasks import load; ex = load({REPO!r}, device='cpu'); print(ex.task.name, len(ex.predict(['x'])))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["ner", "1"], r.stderr[-2000:]  # the Python API, same cache


def test_a_repository_not_in_the_cache_offline_is_a_clear_error(tmp_path):
    env = hub_env(tmp_path, None, offline=True)
    r = gplinker(["info", "gplinker-test/missing"], env)
    assert r.returncode == 2
    assert "not in the Hugging Face cache" in r.stderr and "HF_HUB_OFFLINE" in r.stderr and "Traceback" not in r.stderr


def hostile_copy(pushed, tmp_path) -> tuple[Path, Path]:
    """A copy of the cache whose snapshot can be tampered with: (HF_HOME, snapshot folder)."""
    _, tmp, _ = pushed
    home = tmp_path / "hf"
    shutil.copytree(tmp / "hf", home, symlinks=True)
    snapshot = next((home / "hub" / "models--gplinker-test--tiny-ner" / "snapshots").iterdir())
    return home, snapshot


@pytest.mark.parametrize("attack", ["changed-blob", "code-file", "link-outside"])
def test_a_hostile_cached_repository_is_refused_like_a_hostile_folder(pushed, tmp_path, attack):
    home, snapshot = hostile_copy(pushed, tmp_path)
    marker = tmp_path / "pwned"
    if attack == "changed-blob":  # weights swapped in the cache after download
        blob = (snapshot / "heads.safetensors").resolve()
        blob.chmod(0o644)
        data = bytearray(blob.read_bytes())
        data[-1] ^= 1
        blob.write_bytes(bytes(data))
        expected = "does not match the fingerprint"
    elif attack == "code-file":  # a module beside the encoder, laid out as the cache lays files out
        blob = snapshot.parent.parent / "blobs" / "evil"
        blob.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
        (snapshot / "encoder" / "modeling_evil.py").symlink_to(os.path.relpath(blob, snapshot / "encoder"))
        expected = "modeling_evil.py"
    else:  # a snapshot file linking outside the cache
        outside = tmp_path / "outside.json"
        outside.write_bytes((snapshot / "gplinker.json").read_bytes())
        (snapshot / "gplinker.json").unlink()
        (snapshot / "gplinker.json").symlink_to(outside)
        expected = "symbolic link"
    env = hub_env(tmp_path, None, offline=True)
    env["HF_HOME"] = str(home)
    r = gplinker(["info", REPO], env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
