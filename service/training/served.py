"""`aesrm-eval --served`: the model on SERVED video, not on training renders.

Training clips are rendered straight at T = 8; served clips are encoded video (H.264 here, as generators
deliver) decoded and sampled by the gateway's own ingest (service.ingest.decode), with the motion of 8
frames picked from seconds of footage. This renders the shipped example photos (service.examples, the
main job's material) as 2 s pans, applies the examples' plain defects (noise, blur, too dark, flicker) at
two strengths, encodes both sides, decodes them through the gateway path and asks the model: the
defect's dimension should prefer the clean clip and the other dimensions should stay within [0.2, 0.8].
Its photos (BytheWater, ColorfulCups, Path) are training photos of the recipe; the camera, the defects'
implementation and the codec path are not.
"""

from __future__ import annotations

import numpy as np
import torch

from service.model.network import DIMENSIONS

DEFECTS = {"noise": "VF", "blur": "VF", "dark": "VA", "flicker": "VP"}
STRENGTHS = (0.5, 0.8)
STRONG = float(np.log(4.0))  # |logit| > log 4 <=> P outside [0.2, 0.8]


@torch.inference_mode()
def served_examples(model, frames: int = 48, width: int = 320, height: int = 180) -> dict:
    """Per (photo, defect, strength): P(clean > defective) per dimension and overall, and a summary."""
    from service.examples import PHOTOS, degrade, encode, pan_frames, photo
    from service.ingest.decode import DecodeLimits, decode_views

    views = model.config.views()
    limits = DecodeLimits(max_pixels=4096 * 4096, max_duration_s=600, max_frames=100_000)

    def served(clip: np.ndarray) -> list[torch.Tensor]:  # every view the model takes, as the gateway makes them
        got = decode_views(encode(clip), views, limits)[0]
        return [torch.from_numpy(got[v.name][None]) for v in views]

    rows = []
    for name in PHOTOS:
        clean = pan_frames(photo(name), frames, width, height)
        a = served(clean)
        for defect, dim in DEFECTS.items():
            for s in STRENGTHS:
                b = served(degrade(clean, defect, s))
                d = model(a[0], b[0], *(a[1:] + b[1:]))[0][0].double()
                k = DIMENSIONS.index(dim)
                others = [float(d[j]) for j in range(len(DIMENSIONS)) if j != k]
                rows.append({"photo": name, "defect": defect, "strength": s, "dimension": dim,
                             "p": {n: round(float(torch.sigmoid(d[j])), 3) for j, n in enumerate(DIMENSIONS)},
                             "p_overall": round(float(torch.sigmoid(d.mean())), 3),
                             "ok": bool(d[k] > 0), "overall_ok": bool(d.mean() > 0),
                             "off_strong": any(abs(o) > STRONG for o in others),
                             "off_backwards": any(o < -STRONG for o in others)})
    mean = lambda key: round(float(np.mean([r[key] for r in rows])), 3)  # noqa: E731
    return {"rows": rows, "pairs": len(rows), "accuracy": mean("ok"), "overall_accuracy": mean("overall_ok"),
            "off_target_strong": mean("off_strong"), "off_target_backwards": mean("off_backwards")}


def print_served(m: dict) -> None:
    print(f"\nserved example clips (H.264, gateway decode; {m['pairs']} pairs): P(clean > defective)")
    print(f"{'photo':13s} {'defect':8s} {'s':>4s} {'dim':4s} {'VA':>6s} {'VF':>6s} {'VP':>6s} {'overall':>8s}")
    for r in m["rows"]:
        p = r["p"]
        print(f"{r['photo']:13s} {r['defect']:8s} {r['strength']:4.1f} {r['dimension']:4s} {p['VA']:6.3f} "
              f"{p['VF']:6.3f} {p['VP']:6.3f} {r['p_overall']:8.3f}")
    print(f"edited dimension right {m['accuracy']:.3f}, overall right {m['overall_accuracy']:.3f}, "
          f"off-target strong {m['off_target_strong']:.3f}, off-target backwards {m['off_target_backwards']:.3f}")
