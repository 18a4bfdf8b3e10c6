"""The shipped proxy checkpoint: contract, exact antisymmetry, manifest, and real-photo preferences.

The preference checks use photos from the held-out TEST split of the training recipe (never trained on):
tests/assets/rocket.jpg (SpaceX, public domain) and chelsea.jpg (CC0), 360-px downscales of
scikit-image 0.26.0's bundled skimage/data images.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from service.model.checkpoint import DEFAULT_CHECKPOINT, load_proxy, untrained_proxy
from service.training.data import CRITERIA, CRITERION_DIMENSION, camera_frames, finish, sample_group
from service.model.network import DIMENSIONS, AesRMProxy, ProxyConfig, _orientation
from tests.conftest import asset_source


@pytest.fixture(scope="module")
def proxy():
    torch.set_num_threads(2)
    return load_proxy()


def _camera(img: np.ndarray) -> dict:
    """A fixed slow pan over the middle of the photo at 256x144."""
    h, w = img.shape[:2]
    cw = w * 0.6
    return {"size": (256, 144), "c0": np.array([w * 0.45, h / 2]), "c1": np.array([w * 0.55, h / 2]),
            "cw0": cw, "cw1": cw * 1.05, "src": (w, h), "roll": 0.0}


def test_checkpoint_files_and_manifest(proxy):
    model, m = proxy
    assert DEFAULT_CHECKPOINT.is_file() and DEFAULT_CHECKPOINT.with_suffix(".json").is_file()
    assert DEFAULT_CHECKPOINT.stat().st_size < 5_000_000
    assert m["model_id"] == "aesrm-proxy" and m["trained"] is True and m["version"]
    assert m["checkpoint_sha256"] == hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()
    assert (m["frames"], m["height"], m["width"]) == (8, 128, 128)
    assert tuple(m["criteria"]) == model.config.criteria == CRITERIA and len(CRITERIA) <= 15
    assert tuple(m["criterion_dimension"]) == CRITERION_DIMENSION
    assert set(CRITERION_DIMENSION) == set(DIMENSIONS)
    for key in ("data_hash", "seed", "training", "sources", "metrics"):
        assert m[key], key
    test = m["metrics"]["test"]
    assert set(test["dimensions"]) == set(DIMENSIONS) and set(test["criteria"]) == set(CRITERIA)
    assert test["order_consistency"] == 1.0
    files = {s: {f["id"] for f in m["sources"][s]} for s in ("train", "val", "test")}
    assert files["test"] and not (files["test"] & files["train"]) and not (files["val"] & files["train"])
    assert all(f["license"] and f["package"] for s in m["sources"].values() for f in s)


def test_a_fine_tuning_run_records_what_it_started_from(tmp_path):
    """`aesrm-train --init`: the manifest's training.init names the start checkpoint by file, sha256 and
    version, read by train.init_record from a real saved checkpoint and its manifest; none without --init."""
    from service.model.checkpoint import save_checkpoint
    from service.training.train import init_record

    torch.manual_seed(1)
    path = tmp_path / "stage1.pt"
    saved = save_checkpoint(AesRMProxy(ProxyConfig()), path, {"version": "9.9.9"})
    assert init_record(str(path)) == {"file": "stage1.pt", "sha256": saved["checkpoint_sha256"], "version": "9.9.9"}
    assert init_record(None) is None


def swapped(inputs: tuple) -> tuple:
    """forward() inputs (frames_a, frames_b[, fragments_a, fragments_b]) with A and B swapped in every view."""
    return tuple(inputs[i ^ 1] for i in range(len(inputs)))


def test_contract_shapes(proxy):
    model, _ = proxy
    inputs = model.example_inputs(2, torch.Generator().manual_seed(0))  # every view of the checkpoint
    assert len(inputs) == 2 * len(model.config.views()) == 4  # 2.2.0: whole frames and fragments
    with torch.inference_mode():
        dim, crit = model(*inputs)
        emb = model.encode(*(torch.cat(inputs[k:k + 2]) for k in range(0, len(inputs), 2)))  # a's then b's
        dim2, crit2 = model.heads(emb[:2], emb[2:])
        wts = model.dimension_weights()
    assert dim.shape == (2, 3) and crit.shape == (2, len(CRITERIA)) and emb.shape == (4, model.config.embed_dim)
    assert torch.allclose(dim, dim2, atol=1e-4) and torch.allclose(crit, crit2, atol=1e-4)
    # dimension logits are a non-negative combination of their own criteria's logits
    assert (wts >= 0).all()
    for d, row in zip(DIMENSIONS, wts):
        assert all(float(x) == 0.0 for x, cd in zip(row, CRITERION_DIMENSION) if cd != d)
    # from 2.0.0: dimensions combine the raw criterion logits; each output is divided by its
    # validation-fitted temperature and soft-bounded
    bound = model.config.bound
    with torch.inference_mode():
        raw = (emb[:2] - emb[2:]) @ model.criterion_w.t()
    comb = raw @ wts.t()
    if bound:
        raw = bound * torch.tanh(raw / model.crit_temperature / bound)
        comb = bound * torch.tanh(comb / model.dim_temperature / bound)
    assert torch.allclose(crit, raw, atol=1e-4) and torch.allclose(dim, comb, atol=1e-4)


def test_logits_are_bounded_and_still_exactly_antisymmetric_for_huge_weights():
    """However far apart two clips are, and whatever the temperatures, no logit exceeds the bound (1.1.0
    gave 87 on a plain camera shake); the odd soft clip keeps forward(b, a) == -forward(a, b) bit-exact."""
    model, _ = untrained_proxy(seed=5)
    assert model.config.bound > 0
    with torch.no_grad():
        model.criterion_w.mul_(1e4)
        model.dim_temperature.copy_(torch.tensor([1.0, 2.0, 0.5]))
    x = model.example_inputs(2, torch.Generator().manual_seed(2))
    for side_b in x[1::2]:
        side_b.zero_()  # noise vs black in every view
    with torch.inference_mode():
        d_ab, c_ab = model(*x)
        d_ba, c_ba = model(*swapped(x))
    assert torch.equal(d_ba, -d_ab) and torch.equal(c_ba, -c_ab)
    bound = model.config.bound
    assert (d_ab.abs() <= bound + 1e-5).all() and (c_ab.abs() <= bound + 1e-5).all()
    assert (d_ab.abs()[:, [0, 2]] > 0.5 * bound).all()  # saturated, not zeroed (VA: T=1, VP: T=0.5)


@pytest.mark.parametrize("which", ["trained", "untrained"])
def test_antisymmetry_exact(proxy, which):
    model = proxy[0] if which == "trained" else untrained_proxy(seed=3)[0]
    inputs = model.example_inputs(3, torch.Generator().manual_seed(1))
    same = tuple(inputs[i & ~1] for i in range(len(inputs)))  # A on both sides
    with torch.inference_mode():
        d_ab, c_ab = model(*inputs)
        d_ba, c_ba = model(*swapped(inputs))
        d_aa, _ = model(*same)
    assert torch.equal(d_ba, -d_ab) and torch.equal(c_ba, -c_ab)
    assert torch.equal(d_aa, torch.zeros_like(d_aa))


def test_untrained_proxy_is_marked():
    model, m = untrained_proxy(seed=0)
    assert isinstance(model, AesRMProxy) and m["trained"] is False and not model.training
    assert m["criteria"] == list(CRITERIA)


@pytest.mark.parametrize("photo", ["rocket", "chelsea"])
@pytest.mark.parametrize("criterion,strength", [("sharpness", 0.8), ("noise", 0.8), ("exposure", 0.8),
                                                ("frame_stutter", 0.8)])
def test_prefers_unedited_held_out_clip(proxy, photo, criterion, strength):
    """Unedited real clip vs a strongly edited copy: the edited criterion's dimension prefers the original.
    (2.0.0 failed shot noise on the dark rocket photo: its noisy clip read as "sharper" and out-voted the
    noise criterion; 2.1.0's wrong_way term fixed it.)"""
    model, _ = proxy
    levels = asset_source(photo).levels
    cam = _camera(levels[0])
    x = camera_frames(levels, cam, {})
    clean = finish(x, {})
    edited = finish(x, {criterion: (strength, 7, -1.0)})
    assert clean.shape == (16, 128, 128, 3) and clean.dtype == np.uint8  # whole frames + fragments
    with torch.inference_mode():
        dim, crit = model.forward_packed(torch.from_numpy(clean[None]), torch.from_numpy(edited[None]))
    d = DIMENSIONS.index(CRITERION_DIMENSION[CRITERIA.index(criterion)])
    assert dim[0, d] > 0 and crit[0, CRITERIA.index(criterion)] > 0


def test_data_stream_is_seeded():
    """A training group depends only on its seed: same seed, same pixels; graded pairs really differ."""
    class Src:
        levels = asset_source("rocket").levels

    a, c1, st1 = sample_group([Src], np.random.default_rng([1234, 0, 5]))
    b, c2, st2 = sample_group([Src], np.random.default_rng([1234, 0, 5]))
    assert c1 == c2 and st1 == st2 and np.array_equal(a, b)
    assert a.shape == (3, 16, 128, 128, 3) and a.dtype == np.uint8  # views stacked along time
    assert st1[0] < st1[1] < st1[2] and not np.array_equal(a[0], a[2])


def test_orientation_features_track_camera_roll():
    """The 1.1.0 edge-orientation statistics on a real held-out photo: axis alignment (cos 4θ) falls and
    rotation magnitude (|sin 4θ|) rises monotonically as the camera rolls further."""
    levels = asset_source("rocket").levels
    cam = _camera(levels[0])
    feats = []
    for s in (0.0, 0.3, 0.6, 1.0):
        x = finish(camera_frames(levels, cam, {"composition_tilt": (s, 7, 1.0)} if s else {}), {})
        raw = torch.from_numpy(x[:8]).permute(0, 3, 1, 2).float()  # the whole-frame view
        feats.append(_orientation(raw).mean(0))
    alignment, rotation = [float(f[0]) for f in feats], [float(f[1]) for f in feats]
    assert all(a > b for a, b in zip(alignment, alignment[1:])), alignment
    assert all(a < b for a, b in zip(rotation, rotation[1:])), rotation


def test_tilted_held_out_clip_loses(proxy):
    model, _ = proxy
    levels = asset_source("rocket").levels
    cam = _camera(levels[0])
    level = finish(camera_frames(levels, cam, {}), {})
    tilted = finish(camera_frames(levels, cam, {"composition_tilt": (1.0, 7, 1.0)}), {})
    with torch.inference_mode():
        dim, crit = model.forward_packed(torch.from_numpy(level[None]), torch.from_numpy(tilted[None]))
    assert dim[0, DIMENSIONS.index("VA")] > 0 and crit[0, CRITERIA.index("composition_tilt")] > 0


def test_calibration_is_saved_with_the_checkpoint_and_applied_after_loading(tmp_path):
    """Temperatures fitted by training's calibrate() travel in the state_dict (the loaded model applies them)
    and in the manifest; a fresh load gives the same logits as the calibrated model."""
    from service.model.checkpoint import save_checkpoint
    from service.training.train import calibrate

    class Src:
        levels = asset_source("chelsea").levels

    torch.set_num_threads(1)
    groups = [sample_group([Src], np.random.default_rng([3, c]), criterion=c) for c in range(len(CRITERIA))]
    model, _ = untrained_proxy(seed=2)
    temps = calibrate(model, groups)
    assert model.dim_temperature.tolist() == pytest.approx([temps["dimension"][d] for d in DIMENSIONS], rel=1e-2)
    assert not torch.equal(model.crit_temperature, torch.ones(len(CRITERIA)))
    path = tmp_path / "cal.pt"
    save_checkpoint(model, path, {"training": {"calibration": temps}})
    loaded, manifest = load_proxy(path)
    assert torch.equal(loaded.dim_temperature, model.dim_temperature) and manifest["calibrated"] is True
    a, b = torch.from_numpy(groups[0][0][:1]), torch.from_numpy(groups[0][0][2:])
    with torch.inference_mode():
        assert torch.equal(loaded.forward_packed(a, b)[0], model.forward_packed(a, b)[0])


def _noise_group(photo: str, seed: int):
    """One training group (clean, moderate, strong noise) of a test photo, better side first, and an
    untrained proxy in train mode: the inputs of the pair_loss tests."""
    class Src:
        levels = asset_source(photo).levels

    clips, c, _ = sample_group([Src], np.random.default_rng([9, seed]), criterion=CRITERIA.index("noise"))
    model, _ = untrained_proxy(seed=4)
    return (torch.from_numpy(clips[None]), torch.tensor([c]), torch.zeros(1, 3, dtype=torch.bool),
            model.train())


def test_off_target_penalty_counts_only_other_dimensions_beyond_the_margin():
    """RED-Aes relative consistency: a single-edit pair pays for other dimensions' logits only beyond
    OFF_TARGET_MARGIN; small co-movements are free, large ones cost."""
    from service.training.train import pair_loss

    clips, crit, flip, model = _noise_group("rocket", 1)
    with torch.no_grad():
        model.criterion_w.mul_(1e-6)  # every logit ~0: inside the margin
        base, _ = pair_loss(model, clips, crit, flip)
        same, _ = pair_loss(model, clips, crit, flip, off_dim=1.0, off_crit=1.0)
        model.criterion_w.mul_(1e9)  # saturated logits on every head
        big0, _ = pair_loss(model, clips, crit, flip)
        big1, _ = pair_loss(model, clips, crit, flip, off_dim=1.0, off_crit=1.0)
    assert float(same) == pytest.approx(float(base), abs=1e-6)
    assert float(big1) > float(big0) + 1.0


def test_checkpoints_from_before_2_0_load_unbounded_with_a_clear_warning(tmp_path, caplog):
    """A 1.x checkpoint (no `bound` in its config, no temperatures) rebuilds the 1.x heads exactly and says
    that its logits are unbounded and uncalibrated."""
    model, _ = untrained_proxy(seed=1)
    cfg = {k: v for k, v in model.config.to_dict().items() if k != "bound"}
    old = AesRMProxy(ProxyConfig.from_dict(cfg))
    path = tmp_path / "old.pt"
    torch.save({"config": cfg, "state_dict": old.state_dict()}, path)
    assert "dim_temperature" not in old.state_dict()
    with caplog.at_level("WARNING", logger="service.model.checkpoint"):
        loaded, manifest = load_proxy(path)
    assert "predates proxy 2.0.0" in caplog.text and "unbounded and uncalibrated" in caplog.text
    assert loaded.config.bound == 0.0 and manifest["calibrated"] is False


def test_checkpoints_from_before_orientation_features_still_load():
    """A 1.0.0 config has no `orientation` key: it must rebuild the 1.0.0 architecture, not the new one."""
    old = {k: v for k, v in ProxyConfig().to_dict().items() if k != "orientation"}
    cfg = ProxyConfig.from_dict(old)
    assert cfg.orientation is False
    assert AesRMProxy(cfg).frame_proj[0].in_features == AesRMProxy(ProxyConfig()).frame_proj[0].in_features - 8


def test_checkpoints_from_before_the_fragments_view_load_as_whole_frame_models(tmp_path):
    """A 2.1.0 config has no `fragments` key: it rebuilds the one-view architecture, and the gateway's
    contract for it asks for whole frames only (the same cache keys as before)."""
    from service.backends.embedded import contract_from_manifest

    cfg = {k: v for k, v in ProxyConfig().to_dict().items() if k not in ("fragments", "frag_widths")}
    old = AesRMProxy(ProxyConfig.from_dict(cfg))
    path = tmp_path / "v21.pt"
    torch.save({"config": cfg, "state_dict": old.state_dict()}, path)
    loaded, manifest = load_proxy(path)
    assert loaded.config.fragments == 0 and manifest["views"] == "frames:letterbox"
    contract = contract_from_manifest(manifest)
    assert [v.name for v in contract.views] == ["frames"] and contract.sampling_key == "T8xH128xW128"
    a = torch.zeros((1, 8, 128, 128, 3), dtype=torch.uint8)
    with torch.inference_mode():
        assert loaded(a, a)[0].shape == (1, 3)


def test_bounded_calibrated_heads_export_to_onnx_with_parity(tmp_path):
    """The 2.0 heads (odd soft bound, temperatures) survive the ONNX export used by Triton/TensorRT."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from service.training.export_onnx import OUTPUT_NAMES, export, input_names

    model, _ = untrained_proxy(seed=6)
    with torch.no_grad():
        model.criterion_w.mul_(50.0)  # drive some logits into the bound
        model.dim_temperature.copy_(torch.tensor([0.7, 1.3, 2.0]))
        model.crit_temperature.copy_(torch.linspace(0.5, 3.0, len(CRITERIA)))
    path = export(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = model.example_inputs(3, torch.Generator().manual_seed(1))
    for side_b in x[1::2]:
        side_b[0] = 0  # black vs noise in every view: far apart, so the bound saturates
    dim, crit = sess.run(OUTPUT_NAMES, {n: t.numpy() for n, t in zip(input_names(model), x)})
    with torch.inference_mode():
        tdim, tcrit = model(*x)
    tol = 50 * 1e-4  # the 50x head weights scale the encoder's float rounding (1e-4 in test_onnx_parity) too
    assert np.abs(dim - tdim.numpy()).max() < tol and np.abs(crit - tcrit.numpy()).max() < tol
    assert np.abs(crit[0]).max() > 1.0  # not a trivially zero comparison


def test_dimensions_share_one_temperature(proxy):
    """The overall reward is a weighted mean of the dimension logits, so calibration must not re-weight the
    dimensions: the shipped checkpoint has one dimension temperature (per dimension, VA got 6.7 on the val
    photos and a very dark clip beat the clean one)."""
    model, manifest = proxy
    t = model.dim_temperature.tolist()
    assert max(t) == min(t) and t[0] != 1.0  # fitted, and shared
    assert all(v == pytest.approx(t[0], abs=1e-3) for v in manifest["training"]["calibration"]["dimension"].values())


def test_wrong_way_term_charges_only_sibling_criteria_that_favour_the_edited_side():
    """2.1.0's wrong_way term: on a noise pair, a VF sibling (sharpness) that says the NOISY clip is better
    pays beyond WRONG_WAY_MARGIN; the same sibling agreeing with the label, or a criterion of another
    dimension, pays nothing in this term (the off-target hinge covers those). flip all False: better side
    first, label 1, a positive logit agrees."""
    from service.training.train import WRONG_WAY_MARGIN, pair_loss

    clips, crit, flip, model = _noise_group("rocket", 1)
    with torch.no_grad():
        emb = model.encode_packed(clips.flatten(0, 1))
        diff = emb[0] - emb[2]  # the cleanest vs the noisiest clip of the group
        direction = diff / diff.square().sum()  # w . diff == 1 for w = direction

        def loss_with(crit_name: str, logit: float, wrong_way: float) -> float:
            model.criterion_w.zero_()
            model.criterion_w[CRITERIA.index(crit_name)] = direction * logit
            return float(pair_loss(model, clips, crit, flip, wrong_way=wrong_way)[0])

        for name, logit, charged in [("sharpness", -4.0, True), ("sharpness", 4.0, False),
                                     ("sharpness", -WRONG_WAY_MARGIN / 4, False), ("exposure", -4.0, False)]:
            extra = loss_with(name, logit, 1.0) - loss_with(name, logit, 0.0)
            assert (extra > 0.1) if charged else extra == pytest.approx(0.0, abs=1e-6), (name, logit, extra)


def test_off_dim_margin_sets_where_the_dimension_hinge_starts():
    """--off-dim-margin: another dimension's logit of 0.35 is free under the default margin 0.5 and
    charged under 0.2."""
    from service.training.train import pair_loss

    clips, crit, flip, model = _noise_group("chelsea", 2)
    with torch.no_grad():
        emb = model.encode_packed(clips.flatten(0, 1))
        diff = emb[0] - emb[2]
        model.criterion_w.zero_()
        k = CRITERIA.index("exposure")  # a VA criterion; VA is not the edited dimension (VF)
        model.criterion_w[k] = diff / diff.square().sum() * 0.35 / float(model.dimension_weights()[0, k])
        base = float(pair_loss(model, clips, crit, flip)[0])
        wide = float(pair_loss(model, clips, crit, flip, off_dim=1.0, off_dim_margin=0.5)[0])
        tight = float(pair_loss(model, clips, crit, flip, off_dim=1.0, off_dim_margin=0.2)[0])
    assert wide == pytest.approx(base, abs=1e-6)
    assert tight > base + 1e-4


@pytest.mark.parametrize("width", [dict(frame_dim=128, embed_dim=160), dict(dim_heads=32, embed_dim=96)])
def test_a_wider_or_per_dimension_embedding_saves_loads_and_stays_antisymmetric(tmp_path, width):
    """aesrm-train --frame-dim/--embed-dim/--dim-heads: the width travels in the manifest's config, so the
    checkpoint rebuilds the same architecture when loaded, and A/B antisymmetry holds as for the default."""
    from service.model.checkpoint import save_checkpoint

    torch.manual_seed(5)
    model = AesRMProxy(ProxyConfig(**width)).eval()
    path = tmp_path / "wide.pt"
    save_checkpoint(model, path, {})
    loaded, manifest = load_proxy(path)
    assert {k: manifest["config"][k] for k in width} == width
    assert loaded.criterion_w.shape == (len(CRITERIA), width["embed_dim"])
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, 256, (2, 8, 128, 128, 3), dtype=torch.uint8, generator=g) for _ in range(2))
    with torch.inference_mode():
        ab, ba = loaded(a, b, a, b), loaded(b, a, b, a)
        assert torch.equal(ab[0], model(a, b, a, b)[0])
        assert torch.equal(ba[0], -ab[0]) and torch.equal(ba[1], -ab[1])


def test_per_dimension_heads_read_only_their_own_block():
    """--dim-heads: each dimension's criteria read only that dimension's block of the embedding, so a change
    confined to the VA block moves VA and leaves VF and VP exactly at 0."""
    torch.manual_seed(3)
    model = AesRMProxy(ProxyConfig(dim_heads=32, embed_dim=96)).eval()
    with torch.no_grad():
        model.criterion_w.normal_()  # dense weights: only the block mask can keep VF / VP still
    ea = torch.randn(4, 96)
    eb = ea.clone()
    eb[:, :32] += torch.randn(4, 32)  # VA block (DIMENSIONS order)
    dim, crit = model.raw_heads(ea, eb)
    assert (dim[:, 0].abs() > 0).all() and torch.equal(dim[:, 1:], torch.zeros(4, 2))
    va = torch.tensor([d == "VA" for d in CRITERION_DIMENSION])
    assert torch.equal(crit[:, ~va], torch.zeros(4, int((~va).sum())))


def test_layout_pooling_starts_from_the_checkpoint_it_fine_tunes_and_keeps_the_contract(tmp_path):
    """--layout (issue 10: position-aware pooling for aesthetics): a checkpoint without it loads into the
    layout architecture with only the new layers missing and computes exactly the same function (the
    projection starts at zero), the config travels in the manifest, A/B antisymmetry stays bit-exact, and
    the ONNX export (Triton / TensorRT) matches PyTorch once the new layers carry weight."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from dataclasses import replace

    from service.model.checkpoint import save_checkpoint
    from service.training.export_onnx import OUTPUT_NAMES, export, input_names

    torch.manual_seed(8)
    base = AesRMProxy(ProxyConfig()).eval()
    model = AesRMProxy(replace(base.config, layout=4)).eval()
    missing = model.load_state_dict(base.state_dict(), strict=False)
    assert sorted(missing.missing_keys) == ["layout_conv.weight", "layout_proj.weight"] and not missing.unexpected_keys
    x = model.example_inputs(2, torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(model(*x)[0], base(*x)[0])
        model.layout_proj.weight.normal_(0, 0.05)
        moved = model(*x)
        assert not torch.allclose(moved[0], base(*x)[0])  # the grid now reaches the logits
        swapped = model(x[1], x[0], x[3], x[2])
        assert torch.equal(swapped[0], -moved[0]) and torch.equal(swapped[1], -moved[1])
    path = tmp_path / "layout.pt"
    save_checkpoint(model, path, {})
    loaded, manifest = load_proxy(path)
    assert manifest["config"]["layout"] == 4 and loaded.config.layout == 4
    with torch.inference_mode():
        assert torch.equal(loaded(*x)[0], moved[0])
    sess = ort.InferenceSession(str(export(model, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    dim, crit = sess.run(OUTPUT_NAMES, {n: t.numpy() for n, t in zip(input_names(model), x)})
    assert np.abs(dim - moved[0].numpy()).max() < 1e-3 and np.abs(crit - moved[1].numpy()).max() < 1e-3


def test_eval_refuses_to_ablate_a_grid_the_checkpoint_does_not_have(capsys):
    """aesrm-eval --ablate-layout zeroes the position-aware grid to measure what it contributes; on a
    checkpoint without one (the shipped 2.6.0) it must say so instead of scoring the unchanged model."""
    from service.training.evaluate import main

    with pytest.raises(SystemExit) as exc:
        main(["--ablate-layout", "--per-criterion", "1"])
    assert exc.value.code == 2 and "needs a checkpoint trained with --layout" in capsys.readouterr().err
