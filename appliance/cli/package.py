"""``appliance package build | verify | inspect``: package an ONNX model someone already has.

``build`` reads the tensor specs from the graph, makes golden cases (random valid inputs,
or ``--golden FILE.npz``), writes ``model.json`` and signs the package. Given a folder
holding ``genai_config.json`` (onnxruntime-genai's builder output) it packages a
``task: text-generation`` model instead: every file of the folder, golden prompts
(``--prompt``) with their greedy continuations. ``verify`` checks
a package against public keys; ``inspect`` prints its manifest without verifying.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from appliance import __version__ as _appliance_version


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("package", help="build, verify and inspect model packages")
    sub = parser.add_subparsers(dest="package_command", required=True, metavar="ACTION")

    build = sub.add_parser(
        "build", help="package and sign an existing ONNX model or onnxruntime-genai folder"
    )
    build.add_argument(
        "model",
        type=Path,
        metavar="MODEL.onnx|FOLDER",
        help="a folder with genai_config.json: a generative model",
    )
    build.add_argument("--name", required=True)
    build.add_argument("--version", required=True, type=int, help="integer, increasing")
    build.add_argument("--key", required=True, type=Path, help="PEM EC private key")
    build.add_argument("--out", required=True, type=Path, help="folder or NAME-VERSION.apkg")
    build.add_argument(
        "--golden",
        type=Path,
        metavar="FILE.npz",
        help="golden inputs keyed by input name (default: random valid inputs)",
    )
    build.add_argument("--labels", nargs="+", help="class labels, in output order")
    build.add_argument("--labels-file", type=Path, help="class labels, one per line")
    build.add_argument("--max-batch-size", type=int, default=32)
    build.add_argument(
        "--task",
        default="classification",
        choices=["classification", "embedding", "regression", "other"],
    )
    build.add_argument("--source", default="", help="where the model came from (provenance)")
    build.add_argument(
        "--include",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a file shipped and signed beside the model (repeatable); an embedding "
        "model needs its tokenizer.json",
    )
    embedding = build.add_argument_group("embedding models (--task embedding)")
    embedding.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    embedding.add_argument(
        "--no-normalize", action="store_true", help="serve embeddings without L2 normalisation"
    )
    embedding.add_argument("--max-length", type=int, help="tokens per text at most")
    generative = build.add_argument_group("generative models (a FOLDER with genai_config.json)")
    generative.add_argument(
        "--prompt",
        action="append",
        default=[],
        metavar="TEXT",
        help="a golden prompt (repeatable; synthetic text, never patient data); default: "
        "a few openings of clinical notes",
    )
    generative.add_argument(
        "--golden-tokens",
        type=int,
        default=16,
        metavar="N",
        help="tokens of greedy continuation recorded per golden prompt",
    )
    build.set_defaults(func=_build)

    verify = sub.add_parser("verify", help="check a package's signature and manifest")
    verify.add_argument("package", type=Path, metavar="PKG")
    verify.add_argument(
        "--key",
        required=True,
        type=Path,
        action="append",
        help="trusted PEM public key (repeatable)",
    )
    verify.set_defaults(func=_verify)

    inspect = sub.add_parser("inspect", help="print a package's manifest (no verification)")
    inspect.add_argument("package", type=Path, metavar="PKG")
    inspect.add_argument("--json", action="store_true", help="the whole model.json")
    inspect.set_defaults(func=_inspect)


def _labels(args: argparse.Namespace) -> tuple[str, ...] | None:
    if args.labels_file is not None:
        from appliance.errors import PackageError

        try:
            lines = args.labels_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise PackageError(f"{args.labels_file}: could not read labels: {exc}") from exc
        return tuple(line.strip() for line in lines if line.strip())
    return tuple(args.labels) if args.labels else None


def _provenance(args: argparse.Namespace) -> Any:
    from appliance.package import Provenance

    return Provenance(
        source_model=args.source or args.model.name,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        tool=f"appliance {_appliance_version}",
    )


def _build(args: argparse.Namespace) -> int:
    from appliance.package.generative import is_generative_folder

    if args.model.is_dir() and is_generative_folder(args.model):
        return _build_generative(args)
    from appliance.package import (
        Manifest,
        build_package,
        make_golden,
        specs_from_onnx,
    )
    from appliance.package.manifest import Embedding

    inputs, outputs = specs_from_onnx(args.model)
    golden = make_golden(args.model, args.golden)
    manifest = Manifest(
        name=args.name,
        version=args.version,
        task=args.task,
        inputs=inputs,
        outputs=outputs,
        labels=_labels(args),
        max_batch_size=args.max_batch_size,
        provenance=_provenance(args),
        golden=golden,
        embedding=Embedding(
            pooling=args.pooling, normalize=not args.no_normalize, max_length=args.max_length
        )
        if args.task == "embedding"
        else None,
    )
    path = build_package(args.model, manifest, args.key, args.out, extra_files=args.include)
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(golden.cases)} golden cases)")
    return 0


def _build_generative(args: argparse.Namespace) -> int:
    from appliance.package import TEXT_GENERATION, Manifest, build_generative_package
    from appliance.package.generative import (
        DEFAULT_PROMPTS,
        GENERATIVE_INPUTS,
        GENERATIVE_OUTPUTS,
        check_genai_config,
        make_generation_golden,
    )

    check_genai_config(args.model, flat=True)  # before running it
    golden = make_generation_golden(
        args.model, tuple(args.prompt) or DEFAULT_PROMPTS, args.golden_tokens
    )
    manifest = Manifest(
        name=args.name,
        version=args.version,
        task=TEXT_GENERATION,
        inputs=GENERATIVE_INPUTS,
        outputs=GENERATIVE_OUTPUTS,
        max_batch_size=0,  # requests are batched step by step by the engine, not stacked
        provenance=_provenance(args),
        generation_golden=golden,
    )
    path = build_generative_package(args.model, manifest, args.key, args.out)
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(golden.cases)} golden prompts)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from appliance.package import verify_package

    manifest = verify_package(args.package, args.key)
    print(f"OK: {manifest.name} version {manifest.version}, signature and manifest valid")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from appliance.package import unpack_package

    with tempfile.TemporaryDirectory(prefix="apkg-inspect-") as tmp:
        manifest = unpack_package(args.package, Path(tmp) / "pkg")
    if args.json:
        print(manifest.model_dump_json(indent=2))
        return 0
    print(f"{manifest.name} version {manifest.version} ({manifest.task})")
    for kind, specs in (("input", manifest.inputs), ("output", manifest.outputs)):
        for spec in specs:
            print(f"  {kind:6} {spec.name}: {spec.datatype} {list(spec.shape)}")
    print(f"  max batch size: {manifest.max_batch_size}")
    if manifest.labels:
        print(f"  labels: {', '.join(manifest.labels)}")
    cases = len(manifest.golden.cases) if manifest.golden else 0
    if manifest.generation_golden is not None:
        cases = len(manifest.generation_golden.cases)
    print(f"  golden cases: {cases}")
    prov = manifest.provenance
    print(f"  source: {prov.source_model or '-'}  created: {prov.created or '-'}")
    if prov.metrics_after:
        print(f"  metrics: {json.dumps(prov.metrics_after)}")
    return 0
