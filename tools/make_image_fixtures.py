#!/usr/bin/env python3
"""Writes the image fixtures the C++ tests compare against (no Python at test time).

For each case: an input image (PNG unless noted) and what the reference produces:
  * <name>.pixel_values.f32 : transformers' CLIPImageProcessorPil output, float32 CHW
                              [3, S, S] little-endian (small S keeps the fixtures small);
  * <name>.crop.u8          : the uint8 stage (PIL resize BICUBIC + transformers' center
                              crop), HWC, for the full-size 224 case whose floats would be big;
  * <name>.rgb.u8           : PIL convert("RGB") of a decoded file (decode-only cases).
manifest.json lists the cases with sizes.

    pip install pillow numpy transformers
    python3 tools/make_image_fixtures.py
"""
import json
import os

import numpy as np
from PIL import Image, ImageDraw
from transformers import CLIPImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "data", "images")


def scene(w, h, seed):
    """Gradients, shapes and a noisy patch: smooth enough to compress, sharp edges and
    full-range values to exercise the filter's negative lobes and clipping."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 7) % 256], -1)
    img = Image.fromarray(a.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(2, max(3, w // 3))), y0 + int(rng.integers(2, max(3, h // 3)))
        color = tuple(int(c) for c in rng.choice([0, 255, 30, 220], size=3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=color)
    arr = np.array(img)
    ph, pw = max(1, h // 5), max(1, w // 5)
    arr[:ph, :pw] = rng.integers(0, 256, size=(ph, pw, 3), dtype=np.uint8)  # noisy corner
    return arr


def processor(size):
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []

    def add_preprocess_case(name, image, size, store="float"):
        path = os.path.join(OUT, name + ".png")
        image.save(path, optimize=True)
        reloaded = Image.open(path)
        entry = {"name": name, "file": name + ".png", "mode": reloaded.mode,
                 "width": reloaded.width, "height": reloaded.height, "size": size}
        if store == "float":
            pv = processor(size)(reloaded, return_tensors="np")["pixel_values"][0].astype("<f4")
            assert pv.shape == (3, size, size), pv.shape
            pv.tofile(os.path.join(OUT, name + ".pixel_values.f32"))
            entry["pixel_values"] = name + ".pixel_values.f32"
        else:
            rgb = reloaded.convert("RGB")
            w, h = rgb.size
            short, long_ = (w, h) if w <= h else (h, w)
            new_long = int(size * long_ / short)
            nw, nh = (size, new_long) if w <= h else (new_long, size)
            resized = np.array(rgb.resize((nw, nh), resample=Image.BICUBIC))
            top, left = (nh - size) // 2, (nw - size) // 2
            crop = resized[top:top + size, left:left + size]
            # Cross-check against the processor: its floats must come from this crop.
            pv = processor(size)(reloaded, return_tensors="np")["pixel_values"][0]
            mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
            std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
            ours = ((crop.astype(np.float64) * (1 / 255)).astype(np.float32) - mean) / std
            assert np.abs(ours.transpose(2, 0, 1) - pv).max() == 0
            crop.astype(np.uint8).tofile(os.path.join(OUT, name + ".crop.u8"))
            entry["crop"] = name + ".crop.u8"
        cases.append(entry)

    add_preprocess_case("shrink_512x384", Image.fromarray(scene(512, 384, 1)), 48)
    add_preprocess_case("shrink_odd_251x187", Image.fromarray(scene(251, 187, 2)), 40)
    add_preprocess_case("enlarge_37x23", Image.fromarray(scene(37, 23, 3)), 48)
    add_preprocess_case("portrait_odd_77x101", Image.fromarray(scene(77, 101, 4)), 33)
    add_preprocess_case("mixed_40x90", Image.fromarray(scene(40, 90, 5)), 64)  # enlarge one way only
    add_preprocess_case("exact_48x48", Image.fromarray(scene(48, 48, 6)), 48)  # no resize at all
    rgba = np.dstack([scene(90, 130, 7), np.linspace(0, 255, 90 * 130).reshape(130, 90).astype(np.uint8)])
    add_preprocess_case("rgba_90x130", Image.fromarray(rgba, "RGBA"), 48)
    # Plain convert("RGB") (alpha dropped), for the decoder's AlphaMode::Drop.
    dropped = np.array(Image.open(os.path.join(OUT, "rgba_90x130.png")).convert("RGB"))
    dropped.tofile(os.path.join(OUT, "rgba_90x130.drop.u8"))
    add_preprocess_case("grey_53x71", Image.fromarray(scene(53, 71, 8)[..., 1], "L"), 40)
    la = np.dstack([scene(60, 45, 9)[..., 0], np.full((45, 60), 128, np.uint8)])
    add_preprocess_case("grey_alpha_60x45", Image.fromarray(la, "LA"), 40)
    add_preprocess_case("palette_64x50", Image.fromarray(scene(64, 50, 10)).quantize(colors=16), 32)
    add_preprocess_case("clip224_320x240", Image.fromarray(scene(320, 240, 11)), 224, store="crop")

    # Decode-only cases: other containers, compared after convert("RGB").
    base = Image.fromarray(scene(21, 13, 12))
    for name, fmt, img in [("bmp_21x13", "BMP", base),
                           ("gif_21x13", "GIF", base.quantize(colors=32))]:
        path = os.path.join(OUT, name + "." + fmt.lower())
        if fmt == "GIF":  # two frames: only the first must be read
            second = Image.fromarray(255 - scene(21, 13, 13)).quantize(colors=32)
            img.save(path, save_all=True, append_images=[second])
        else:
            img.save(path)
        rgb = np.array(Image.open(path).convert("RGB"))
        rgb.tofile(os.path.join(OUT, name + ".rgb.u8"))
        cases.append({"name": name, "file": os.path.basename(path), "width": 21, "height": 13,
                      "rgb": name + ".rgb.u8"})
    jpg = os.path.join(OUT, "jpeg_32x24.jpg")
    Image.fromarray(scene(32, 24, 14)).save(jpg, quality=95)
    np.array(Image.open(jpg).convert("RGB")).tofile(os.path.join(OUT, "jpeg_32x24.rgb.u8"))
    cases.append({"name": "jpeg_32x24", "file": "jpeg_32x24.jpg", "width": 32, "height": 24,
                  "rgb": "jpeg_32x24.rgb.u8", "lossy_decoder": True})

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "tools/make_image_fixtures.py",
                   "reference": "transformers.CLIPImageProcessorPil + Pillow " + Image.__version__,
                   "cases": cases}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(cases)} cases, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
