"""Packages of onnxruntime-genai folders: built by the CLI, every file signed, golden
prompts with greedy token ids, and the hostile-package checks held for them too."""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import onnx
import onnxruntime_genai as og
import pytest

from appliance.cli import package as package_cli
from appliance.errors import PackageError, SignatureError
from appliance.package import check_unsigned_folder, unpack_package, verify_package
from appliance.package.generative import GENERATIVE_INPUTS
from tests._hostile import TRAVERSAL, resigned_package
from tests._lm import copy_model, genai_model

PROMPTS = ("Patient reports", "Admitted for")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="appliance")
    package_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def _build(folder: Path, key: Path, out: Path, *extra: str) -> Path:
    argv = ["package", "build", str(folder), "--name", "notes", "--version", "2"]
    argv += ["--key", str(key), "--out", str(out), *extra]
    assert _run(argv) == 0
    return out / "notes-2.apkg"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Path, Path]]:
    from appliance.package import generate_keypair

    root = tmp_path_factory.mktemp("genpkg")
    keys = generate_keypair(root / "keys")
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]
    apkg = _build(genai_model(), keys[0], root, *prompts, "--golden-tokens", "8")
    return apkg, keys


def _reference(folder: Path, prompt: str, tokens: int) -> list[int]:
    """Greedy decoding with onnxruntime-genai's Generator, as a user would write it."""
    model = og.Model(str(folder))
    ids = og.Tokenizer(model).encode(prompt)
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(ids) + tokens)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    while not generator.is_done():
        generator.generate_next_token()
    eos = json.loads((folder / "genai_config.json").read_text())["model"]["eos_token_id"]
    return [int(t) for t in generator.get_sequence(0)[len(ids) :] if int(t) != eos]


def test_every_file_of_the_folder_is_packaged_and_signed(
    built: tuple[Path, tuple[Path, Path]],
) -> None:
    apkg, keys = built
    with tarfile.open(apkg) as tar:
        names = sorted(tar.getnames())
    shipped = sorted(p.name for p in genai_model().iterdir())
    assert names == sorted([*shipped, "model.json", "model.sig"])
    assert "model.onnx.data" in names and "tokenizer.json" in names
    manifest = verify_package(apkg, [keys[1]])
    assert manifest.task == "text-generation"
    assert manifest.inputs == GENERATIVE_INPUTS
    assert manifest.golden is None and manifest.generation_golden is not None


def test_golden_cases_are_the_greedy_continuations(
    built: tuple[Path, tuple[Path, Path]], tmp_path: Path
) -> None:
    manifest = unpack_package(built[0], tmp_path / "x")
    golden = manifest.generation_golden
    assert golden is not None
    assert [c.prompt for c in golden.cases] == list(PROMPTS)
    for case in golden.cases:
        assert case.max_tokens == 8
        assert 0 < len(case.token_ids) <= 8
        assert list(case.token_ids) == _reference(genai_model(), case.prompt, 8)


def test_inspect_counts_the_golden_prompts(
    built: tuple[Path, tuple[Path, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["package", "inspect", str(built[0])]) == 0
    out = capsys.readouterr().out
    assert "(text-generation)" in out and "golden cases: 2" in out


def test_changed_weights_fail_the_signature(
    built: tuple[Path, tuple[Path, Path]], tmp_path: Path
) -> None:
    apkg, keys = built
    folder = tmp_path / "pkg"
    unpack_package(apkg, folder)
    data = bytearray((folder / "model.onnx.data").read_bytes())
    data[100] ^= 0xFF
    (folder / "model.onnx.data").write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"tampered: model\.onnx\.data"):
        verify_package(folder, [keys[1]])


def _point_config_at(location: str):  # type: ignore[no-untyped-def]
    def edit(folder: Path) -> None:
        config = json.loads((folder / "genai_config.json").read_text())
        config["model"]["decoder"]["session_options"]["filename"] = location
        (folder / "genai_config.json").write_text(json.dumps(config))

    return edit


def _point_weights_at(location: str):  # type: ignore[no-untyped-def]
    def edit(folder: Path) -> None:
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        external = [t for t in model.graph.initializer if t.external_data]
        for entry in max(external, key=lambda t: t.ByteSize()).external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(model, str(folder / "model.onnx"))

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_point_config_at(TRAVERSAL), "genai_config.model.decoder.session_options.filename"),
        (_point_config_at("/etc/passwd"), "expected the plain name of a file in the package"),
        (_point_config_at("absent.onnx"), "expected a regular file beside the config"),
        (_point_weights_at(TRAVERSAL), "expected the flat name of a data file"),
        (_point_weights_at("genai_config.json"), "outside the file's"),
    ],
    ids=["config-traversal", "config-absolute", "config-missing", "data-traversal", "data-range"],
)
def test_a_validly_signed_hostile_package_is_refused(
    built: tuple[Path, tuple[Path, Path]], tmp_path: Path, edit, message: str
) -> None:  # type: ignore[no-untyped-def]
    apkg, keys = built
    hostile = resigned_package(apkg, keys[0], tmp_path / "hostile.apkg", edit)
    with pytest.raises(PackageError, match=message):
        verify_package(hostile, [keys[1]])


def test_the_decoder_must_be_the_repository_model_file(
    built: tuple[Path, tuple[Path, Path]], tmp_path: Path
) -> None:
    apkg, keys = built

    def rename(folder: Path) -> None:
        config = json.loads((folder / "genai_config.json").read_text())
        config["model"]["decoder"]["filename"] = "tokenizer.json"
        (folder / "genai_config.json").write_text(json.dumps(config))

    hostile = resigned_package(apkg, keys[0], tmp_path / "h.apkg", rename)
    with pytest.raises(PackageError, match=r"expected model.decoder.filename 'model.onnx'"):
        verify_package(hostile, [keys[1]])


def test_build_refuses_subfolders_links_and_reserved_names(
    built: tuple[Path, tuple[Path, Path]], tmp_path: Path
) -> None:
    key = built[1][0]
    sub = copy_model(genai_model(), tmp_path / "sub")
    (sub / "extra").mkdir()
    with pytest.raises(PackageError, match="no links or subfolders"):
        _build(sub, key, tmp_path / "out")
    link = copy_model(genai_model(), tmp_path / "link")
    (link / "notes.txt").symlink_to("/etc/hostname")
    with pytest.raises(PackageError, match="no links or subfolders"):
        _build(link, key, tmp_path / "out")
    reserved = copy_model(genai_model(), tmp_path / "reserved")
    (reserved / "model.sig").write_text("{}")
    with pytest.raises(PackageError, match="the package writes those"):
        _build(reserved, key, tmp_path / "out")
    assert not list(tmp_path.glob("out/*.apkg"))


def test_an_unsigned_generative_folder_keeps_its_files_inside(tmp_path: Path) -> None:
    folder = copy_model(genai_model(), tmp_path / "m" / "1")
    check_unsigned_folder(folder)  # the builder's own output passes
    _point_config_at(TRAVERSAL)(folder)
    with pytest.raises(PackageError, match="inside the model's folder"):
        check_unsigned_folder(folder)
