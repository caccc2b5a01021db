"""Picture and clip collections of any size for bench/scale.py: copies of ../shared/data's real files, as
collections hold them, beside fresh generated ones, so that dedup sees both copies and distinct items.

Item `i` is a function of its number alone (files are written by two processes):
- a third are copies of a real file (`planted.jsonl`: id, of, how): pictures resized, re-encoded as JPEG,
  cropped or mirrored; clips resampled, made quieter, trimmed at the start or transcoded to FLAC;
- the rest are generated, each distinct: pictures of random low-frequency colour fields with shapes and
  grain (they pass the blank and blur rules); clips of random harmonic tones with an envelope and a
  little broadband noise, 1-4 s.
"""

from __future__ import annotations

import io
import json
from multiprocessing import get_context
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = 20261205
COPIES = 1 / 3
IMAGE_OPS = ("resize", "reencode", "crop", "mirror")
AUDIO_OPS = ("resample", "quieter", "trim", "flac")


def real_files(kind: str) -> list[Path]:
    """The shared files the copies are made from: pictures Pillow opens with a side of 200 px or more, clips
    libsndfile reads."""
    rows = [json.loads(line) for line in open(SHARED / f"{kind}_manifest.jsonl")]
    if kind == "images":
        return [SHARED / r["file"] for r in rows if r["pil_ok"] and r["width"] and min(r["width"], r["height"]) >= 200]
    import soundfile as sf

    found = []
    for r in rows:
        try:
            if sf.info(SHARED / r["file"]).frames:
                found.append(SHARED / r["file"])
        except (RuntimeError, sf.LibsndfileError):
            continue
    return found


def picture(i: int, originals: list[Path]) -> tuple[bytes, str, dict | None]:
    """(file bytes, extension, planted copy or None) of picture `i`."""
    from PIL import Image, ImageDraw, ImageOps

    rng = np.random.default_rng([SEED, i])
    if rng.random() < COPIES:
        source = originals[int(rng.integers(len(originals)))]
        how = IMAGE_OPS[int(rng.integers(len(IMAGE_OPS)))]
        image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
        w, h = image.size
        if how == "resize":
            image = image.resize((max(1, int(w * rng.uniform(0.4, 0.9))), max(1, int(h * rng.uniform(0.4, 0.9)))))
        elif how == "crop":
            dx, dy = int(w * 0.05), int(h * 0.05)
            image = image.crop((dx, dy, w - dx, h - dy))
        elif how == "mirror":
            image = ImageOps.mirror(image)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=int(rng.integers(60, 92)))
        return out.getvalue(), "jpg", {"of": source.name, "how": how}
    w, h = int(rng.integers(256, 900)), int(rng.integers(256, 900))
    field = rng.integers(0, 256, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        r = int(rng.integers(10, max(11, min(w, h) // 3)))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue(), "jpg", None


def clip(i: int, originals: list[Path]) -> tuple[bytes, str, dict | None]:
    """(file bytes, extension, planted copy or None) of clip `i`."""
    import soundfile as sf
    import soxr

    rng = np.random.default_rng([SEED, i])
    if rng.random() < COPIES:
        source = originals[int(rng.integers(len(originals)))]
        how = AUDIO_OPS[int(rng.integers(len(AUDIO_OPS)))]
        audio, rate = sf.read(source, dtype="float32", always_2d=True)
        if how == "resample":
            target = 16000 if rate != 16000 else 22050
            audio, rate = soxr.resample(audio, rate, target).astype(np.float32), target
        elif how == "quieter":
            audio = audio * 0.5
        elif how == "trim":
            audio = audio[int(0.1 * rate):]
        out = io.BytesIO()
        sf.write(out, audio, rate, format="FLAC" if how == "flac" else "WAV")
        return out.getvalue(), "flac" if how == "flac" else "wav", {"of": source.name, "how": how}
    rate = int(rng.choice([16000, 22050, 44100]))
    t = np.arange(int(rate * rng.uniform(1, 4))) / rate
    tone = np.zeros_like(t)
    for _ in range(int(rng.integers(2, 6))):
        f0 = rng.uniform(80, 2000)
        tone += sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 5))
    envelope = np.minimum(1, t / 0.05) * np.exp(-t * rng.uniform(0.2, 1.5))
    audio = tone * envelope
    audio = 0.5 * audio / np.abs(audio).max() + rng.normal(0, 0.003, len(t))
    out = io.BytesIO()
    sf.write(out, audio.astype(np.float32), rate, format="WAV")
    return out.getvalue(), "wav", None


MAKERS = {"images": picture, "audio": clip}


def write_range(args: tuple) -> list[dict]:
    kind, folder, start, stop = args
    originals, planted = real_files(kind), []
    for i in range(start, stop):
        data, ext, copy = MAKERS[kind](i, originals)
        name = f"{kind[:3]}-{i:06d}.{ext}"
        (Path(folder) / name).write_bytes(data)
        if copy:
            planted.append({"file": name, **copy})
    return planted


def write_collection(folder: Path, kind: str, items: int, processes: int = 2) -> dict:
    """`items` files under `folder/files/`, the copies in `folder/planted.jsonl`; kept when
    `folder/collection.json` says they were made the same way."""
    spec = {"kind": kind, "items": items, "seed": SEED}
    done = folder / "collection.json"
    if done.exists() and json.loads(done.read_text()).get("spec") == spec:
        return json.loads(done.read_text())
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    for old in files.iterdir():
        old.unlink()
    bounds = [items * k // (processes * 8) for k in range(processes * 8 + 1)]
    with get_context("spawn").Pool(processes) as pool:
        planted = [p for part in pool.map(write_range, [(kind, str(files), a, b) for a, b in zip(bounds, bounds[1:])])
                   for p in part]
    with open(folder / "planted.jsonl", "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in planted)
    info = {"spec": spec, "bytes": sum(p.stat().st_size for p in files.iterdir()), "planted": len(planted)}
    done.write_text(json.dumps(info))
    return info
