"""Hostile and damaged model directories: each is refused with one ModelDirError naming the file,
before any module is built from it, and nothing it holds is run.

Most cases re-write the fingerprint in gplinker.json after the damage, as an attacker (or a careless
edit followed by a copy) would: the checks behind the fingerprint must hold on their own.
"""

import builtins
import json
import os
import struct
import sys

import pytest
from conftest import DATA, read

from gplinker import cli, model_dir
from gplinker.extractor import Extractor, ModelSettings
from gplinker.tasks import load as load_model
from gplinker.tasks import ner


@pytest.fixture(scope="module")
def saved(tiny_encoder, tmp_path_factory):
    """An untrained NER model directory (loading is what is tested, not predictions)."""
    docs = read("ner", DATA / "zh_train.jsonl")[:4]
    ex = Extractor.build(
        str(tiny_encoder), ner.NERTask.from_documents(docs), ModelSettings(head_size=16, max_length=32, stride=8), "cpu", seed=0
    )
    out = tmp_path_factory.mktemp("hostile") / "model"
    ex.save_pretrained(out)
    return out


@pytest.fixture
def model(saved, tmp_path):
    import shutil

    path = tmp_path / "model"
    shutil.copytree(saved, path)
    return path


def config(path):
    return json.loads((path / "gplinker.json").read_text())


def edit(path, **changes):
    cfg = config(path)
    cfg.update(changes)
    (path / "gplinker.json").write_text(json.dumps(cfg))


def refingerprint(path):
    """What an attacker does after changing a file: make the fingerprint match again."""
    edit(path, fingerprint=model_dir.fingerprint(path))


def edit_json(path, rel, refresh=True, **changes):
    f = path / rel
    data = json.loads(f.read_text())
    data.update(changes)
    f.write_text(json.dumps(data))
    if refresh:
        refingerprint(path)


def task_config(path, **changes):
    cfg = config(path)
    cfg["task_config"].update(changes)
    (path / "gplinker.json").write_text(json.dumps(cfg))


def rotate_tokenizer_ids(path):
    f = path / "encoder" / "tokenizer.json"
    spec = json.loads(f.read_text())
    vocab = spec["model"]["vocab"]
    items = sorted(vocab.items(), key=lambda kv: kv[1])
    ids = [i for _, i in items]
    spec["model"]["vocab"] = {p: ids[(k + 7) % len(ids)] for k, (p, _) in enumerate(items)}
    f.write_text(json.dumps(spec))


def bogus_header(path, rel, header: bytes, n: int | None = None):
    f = path / rel
    data = f.read_bytes()
    f.write_bytes(struct.pack("<Q", len(header) if n is None else n) + header + data[8:])
    refingerprint(path)


def nested(depth):
    return "[" * depth + "]" * depth


CASES = {
    # fingerprint: every file, not only the weights
    "tokenizer.json deleted": (lambda p: (p / "encoder" / "tokenizer.json").unlink(), r"tokenizer.json: missing"),
    "tokenizer ids rotated": (rotate_tokenizer_ids, r"tokenizer.json: does not match the fingerprint"),
    "tokenizer_config.json edited": (
        lambda p: edit_json(p, "encoder/tokenizer_config.json", refresh=False, do_lower_case=False),
        r"tokenizer_config.json: does not match the fingerprint",
    ),
    "encoder config edited": (
        lambda p: edit_json(p, "encoder/config.json", refresh=False, hidden_act="relu"),
        r"config.json: does not match the fingerprint",
    ),
    "file added to encoder/": (
        lambda p: (p / "encoder" / "added_tokens.json").write_text('{"x": 5}'),
        r"added_tokens.json: was not saved with this model",
    ),
    "fingerprint removed": (lambda p: edit(p, fingerprint=None), r'"fingerprint" is missing'),
    "fingerprint not an object": (
        lambda p: edit(p, fingerprint=["heads.safetensors"]),
        r'"fingerprint" is missing or not an object',
    ),
    # code execution
    "auto_map with unknown model_type": (
        lambda p: edit_json(
            p,
            "encoder/config.json",
            model_type="evilnet",
            auto_map={"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"},
        ),
        r"names custom code",
    ),
    "auto_map with a known model_type": (
        lambda p: edit_json(p, "encoder/config.json", auto_map={"AutoModel": "evil.EvilModel"}),
        r"names custom code",
    ),
    "auto_map in tokenizer_config.json": (
        lambda p: edit_json(p, "encoder/tokenizer_config.json", auto_map={"AutoTokenizer": ["evil.Tok", None]}),
        r"names custom code",
    ),
    "unknown model_type": (lambda p: edit_json(p, "encoder/config.json", model_type="evilnet"), r"not an architecture"),
    # sizes from the configs, checked against the weights before anything is built
    "vocab_size 6e7": (lambda p: edit_json(p, "encoder/config.json", vocab_size=60_000_000), r"do not belong together"),
    "vocab_size one too small": (
        lambda p: edit_json(
            p, "encoder/config.json", vocab_size=json.loads((p / "encoder/config.json").read_text())["vocab_size"] - 1
        ),
        r"do not belong together",
    ),
    "num_hidden_layers 20000": (lambda p: edit_json(p, "encoder/config.json", num_hidden_layers=20000), r"weights hold 2 layers"),
    "num_hidden_layers '2'": (lambda p: edit_json(p, "encoder/config.json", num_hidden_layers="2"), r"num_hidden_layers"),
    "intermediate_size changed": (
        lambda p: edit_json(p, "encoder/config.json", intermediate_size=4096),
        r"do not belong together",
    ),
    "hidden_size not divisible by heads": (
        lambda p: edit_json(p, "encoder/config.json", num_attention_heads=5),
        r"cannot describe an encoder|do not belong together",
    ),
    "layer_norm_eps infinite": (
        lambda p: (
            (p / "encoder/config.json").write_text(
                (p / "encoder/config.json").read_text().replace('"layer_norm_eps": 1e-12', '"layer_norm_eps": 1e999')
            ),
            refingerprint(p),
        ),
        r"layer_norm_eps",
    ),
    "10^6 labels": (lambda p: task_config(p, labels=[f"L{k}" for k in range(1_000_000)]), r"100000"),
    "labels [1, null, {}]": (lambda p: task_config(p, labels=[1, None, {}]), r"labels\[0\] is 1"),
    "duplicate labels": (lambda p: task_config(p, labels=["PER", "PER"]), r"lists a label twice"),
    "labels a string": (lambda p: task_config(p, labels="PER"), r"must be a list"),
    "decode unknown": (lambda p: task_config(p, decode="evil"), r"unknown NER decoding"),
    "head_size 2^40": (lambda p: edit(p, head_size=2**40), r"head_size must be an even number"),
    "head_size true": (lambda p: edit(p, head_size=True), r"head_size"),
    "max_length '64'": (lambda p: edit(p, max_length="64"), r"max_length must be a whole number"),
    "max_length past the encoder's positions": (
        lambda p: edit(p, max_length=4096, stride=64),
        r"over the encoder's 512 positions",
    ),
    "stride past max_length": (lambda p: edit(p, stride=1000), r"stride must be"),
    "head_type unknown": (lambda p: edit(p, head_type="evil"), r"unknown head type"),
    "temperature NaN": (lambda p: edit(p, temperature=float("nan")), r"temperature must be a finite number above 0"),
    "temperature 0": (lambda p: edit(p, temperature=0), r"temperature must be"),
    "temperature -1": (lambda p: edit(p, temperature=-1.0), r"temperature must be"),
    "link_threshold '0.9'": (lambda p: edit(p, link_threshold="0.9"), r"link_threshold must be a finite number"),
    "link_threshold true": (lambda p: edit(p, link_threshold=True), r"link_threshold"),
    "label_sharing 'yes'": (lambda p: edit(p, label_sharing="yes"), r"label_sharing must be true or false"),
    "format_version 99": (lambda p: edit(p, format_version=99), r"upgrade gplinker"),
    "format_version '2'": (lambda p: edit(p, format_version="2"), r"format_version"),
    "gplinker.json nested 100000 deep": (lambda p: (p / "gplinker.json").write_text(nested(100000)), r"nested too deeply"),
    "gplinker.json not an object": (lambda p: (p / "gplinker.json").write_text("[1, 2]"), r"not a JSON object"),
    # weights: headers checked against the file before any tensor is read
    "heads header length 2^40": (
        lambda p: bogus_header(p, "heads.safetensors", b"{}", 2**40),
        r"heads.safetensors: cannot be read",
    ),
    "heads header shape past the file": (
        lambda p: bogus_header(
            p,
            "heads.safetensors",
            json.dumps({"x": {"dtype": "F32", "shape": [2**30, 2**30], "data_offsets": [0, 2**62]}}).encode(),
        ),
        r"heads.safetensors: cannot be read",
    ),
    "heads header dtype unknown": (
        lambda p: bogus_header(
            p, "heads.safetensors", json.dumps({"x": {"dtype": "EVIL", "shape": [1], "data_offsets": [0, 4]}}).encode()
        ),
        r"heads.safetensors: cannot be read",
    ),
    "encoder header not JSON": (
        lambda p: bogus_header(p, "encoder/model.safetensors", b"\xff\xfe" * 8),
        r"model.safetensors: cannot be read",
    ),
    "damaged tokenizer.json": (
        lambda p: ((p / "encoder/tokenizer.json").write_text('{"model": {"type": "WordPiece"'), refingerprint(p)),
        r"tokenizer.json: the tokenizer cannot be loaded",
    ),
    "tokenizer larger than the embeddings": (
        lambda p: edit_json(p, "encoder/config.json", vocab_size=20),
        r"do not belong together",
    ),
    # links and devices: a model directory is plain files
    "weights a link to /dev/zero": (
        lambda p: ((p / "encoder/model.safetensors").unlink(), os.symlink("/dev/zero", p / "encoder/model.safetensors")),
        r"symbolic link",
    ),
    "tokenizer a link to /etc/passwd": (
        lambda p: ((p / "encoder/tokenizer.json").unlink(), os.symlink("/etc/passwd", p / "encoder/tokenizer.json")),
        r"symbolic link",
    ),
    "gplinker.json a link to /etc/passwd": (
        lambda p: ((p / "gplinker.json").unlink(), os.symlink("/etc/passwd", p / "gplinker.json")),
        r"symbolic link",
    ),
    "encoder config missing": (lambda p: (p / "encoder/config.json").unlink(), r"config.json: missing"),
    "pickle weights": (lambda p: (p / "encoder" / "pytorch_model.bin").write_bytes(b"\x80\x04evil"), r"pickle"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_model_directory_is_refused_before_anything_is_built(model, case, monkeypatch):
    damage, message = CASES[case]
    damage(model)
    monkeypatch.setattr(builtins, "input", lambda *a: pytest.fail("gplinker asked a question while loading"))
    with pytest.raises(model_dir.ModelDirError, match=message):
        load_model(model, device="cpu")


def test_custom_code_in_an_encoder_is_never_run_nor_asked_about(model, tmp_path, monkeypatch, capsys):
    """An encoder folder whose config names its own Python (auto_map): transformers would ask "run
    the custom code? [y/N]" on a terminal; gplinker refuses without asking, for a saved model and
    for an encoder given to train."""
    marker = tmp_path / "ran.txt"
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    for folder in (model / "encoder", tmp_path / "enc"):
        folder.mkdir(exist_ok=True)
        (folder / "evil.py").write_text(
            code + "from transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evilnet'\n"
        )
    edit_json(
        model,
        "encoder/config.json",
        model_type="evilnet",
        auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
    )
    import shutil

    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        shutil.copy(model / "encoder" / f, tmp_path / "enc" / f)
    asked = []
    monkeypatch.setattr(builtins, "input", lambda *a: asked.append(a) or "y")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    assert cli.main(["info", str(model)]) == 2
    assert "encoder/evil.py: a model directory holds data, not code" in capsys.readouterr().err
    (model / "encoder" / "evil.py").unlink()
    refingerprint(model)
    assert cli.main(["info", str(model)]) == 2
    assert "names custom code" in capsys.readouterr().err
    from gplinker.encoders import load_encoder

    with pytest.raises(ValueError, match="never runs an encoder's own code"):
        load_encoder(str(tmp_path / "enc"))
    assert not marker.exists() and not asked


@pytest.mark.parametrize(
    "case",
    [
        "vocab_size 6e7",
        "damaged tokenizer.json",
        "gplinker.json nested 100000 deep",
        "max_length '64'",
        "temperature NaN",
        "num_hidden_layers 20000",
    ],
)
def test_the_cli_says_one_line_for_a_hostile_model(model, case, tmp_path, capsys):
    CASES[case][0](model)
    src = tmp_path / "in.txt"
    src.write_text("王芳在北京。\n")
    assert cli.main(["predict", "--model", str(model), "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "internal error" not in err[0], err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_model_saved_by_the_previous_format_still_loads(model):
    """Format 1 fingerprinted the weights only: such a model loads (with a warning), its weights checked."""
    cfg = config(model)
    cfg["format_version"] = 1
    cfg["fingerprint"] = {k: v for k, v in cfg["fingerprint"].items() if k in model_dir.weight_files(model)}
    (model / "gplinker.json").write_text(json.dumps(cfg))
    assert load_model(model, device="cpu").task.labels
    (model / "heads.safetensors").write_bytes((model / "heads.safetensors").read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(model_dir.ModelDirError, match="does not match the fingerprint"):
        load_model(model, device="cpu")


def test_a_readme_beside_the_model_is_allowed(model):
    (model / "README.md").write_text("# my model\n")
    assert load_model(model, device="cpu").task.labels
