"""Assessment: transferability scores against their formulas, the BatchNorm shift profile against planted shifts,
the verdict rules, and `headstart assess` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from headstart.stats.transferability import hscore, knn_accuracy, leep, logme, nce


def _direct_log_evidence(f, t):
    """max over alpha, beta of log N(t; 0, I/beta + F F^T / alpha): the definition, optimised numerically."""
    from scipy.optimize import minimize
    from scipy.stats import multivariate_normal
    n = len(t)

    def neg(p):
        a, b = np.exp(p)
        return -multivariate_normal(np.zeros(n), np.eye(n) / b + f @ f.T / a).logpdf(t)
    best = min((minimize(neg, x0, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000})
                for x0 in ([0.0, 0.0], [2.0, 1.0], [-2.0, 2.0])), key=lambda r: r.fun)
    return -best.fun / n


@pytest.mark.parametrize("n,d", [(40, 6), (15, 30)])      # more samples than dims, and fewer
def test_logme_matches_direct_evidence_maximisation(n, d):
    rng = np.random.default_rng(n)
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(int)
    direct = np.mean([_direct_log_evidence(f, (y == k).astype(float)) for k in (0, 1)])
    assert logme(f, y, max_iter=1000, tol=1e-10) == pytest.approx(direct, abs=1e-4)


def test_logme_prefers_informative_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    good = np.eye(3)[y] * 2 + rng.normal(size=(120, 3)) * 0.3
    noise = rng.normal(size=(120, 3))
    assert logme(good, y) > logme(noise, y) + 0.1


def test_hscore_formula_by_hand():
    f = np.array([[0.0], [2.0], [4.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    # var(f) = (9 + 1 + 1 + 9) / 4 = 5; class means 1 and 5 -> centred -2, 2: var = 4; H = 4 / 5
    assert hscore(f, y, shrinkage=0.0) == pytest.approx(0.8)
    g = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])   # class-independent: H = 0
    assert hscore(g, np.array([0, 0, 1, 1]), shrinkage=0.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n,d", [(600, 40), (300, 300)])
def test_blocked_logme_and_hscore_equal_the_direct_ones(monkeypatch, n, d):
    """Above GRAM_ABOVE items LogME and H-score come from D x D sums over row blocks, and the source classifier's
    probabilities and LEEP are computed a block of rows at a time (bounded memory at 100k items): the same numbers
    as the SVD and whole-matrix forms, with a rank-deficient feature too."""
    import headstart.stats.transferability as tr
    rng = np.random.default_rng(d)
    y = rng.integers(0, 4, n)
    f = (rng.normal(size=(n, d)) + np.eye(4)[y] @ rng.normal(size=(4, d))).astype(np.float32)
    f[:, 1] = 2 * f[:, 0]                                    # F^T F singular
    w, b = rng.normal(size=(7, d)) / np.sqrt(d), rng.normal(size=7)
    theta = np.exp(f @ w.T + b)
    theta /= theta.sum(1, keepdims=True)
    direct = logme(f, y), hscore(f, y), hscore(f, y, shrinkage=0.1), leep(theta, y)
    monkeypatch.setattr(tr, "GRAM_ABOVE", 10)
    monkeypatch.setattr(tr, "BLOCK", 128)                   # several blocks, the last one short
    blocked = logme(f, y), hscore(f, y), hscore(f, y, shrinkage=0.1), leep(tr.source_probs(f, w, b), y)
    assert blocked == pytest.approx(direct, rel=1e-6)


def test_leep_and_nce_formulas_by_hand():
    y = np.array([0, 0, 0, 1])
    aligned = np.eye(2)[y]
    assert leep(aligned, y) == pytest.approx(0.0, abs=1e-12)           # source class determines the label
    assert nce(y, y) == pytest.approx(0.0, abs=1e-12)
    uniform = np.full((4, 5), 0.2)                                       # source says nothing: log P(y) on average
    prior = 0.75 * np.log(0.75) + 0.25 * np.log(0.25)
    assert leep(uniform, y) == pytest.approx(prior)
    assert nce(np.zeros(4, int), y) == pytest.approx(prior)              # -H(Y)
    # two source classes, z0 -> labels {0, 0, 1}, z1 -> {0}: P(y|z0) = (2/3, 1/3), P(y|z1) = (1, 0)
    z = np.array([0, 0, 1, 0])
    theta = np.eye(2)[z]
    expected = (2 * np.log(2 / 3) + np.log(1.0) + np.log(1 / 3)) / 4
    assert leep(theta, y) == pytest.approx(expected)
    assert nce(z, y) == pytest.approx(expected)


def test_knn_accuracy_separable_vs_random_labels():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    f = np.eye(3)[y] * 5 + rng.normal(size=(60, 3))
    assert knn_accuracy(f, y) == pytest.approx(1.0)
    assert knn_accuracy(f, rng.permutation(y)) < 0.7


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8, momentum=None)
        self.c2, self.b2 = torch.nn.Conv2d(8, 8, 3), torch.nn.BatchNorm2d(8, momentum=None)

    def forward(self, x):
        return self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))


def _profile(net, x, include=None):
    from headstart.models.bnshift import BatchNormShift
    with BatchNormShift(net, include) as bn, torch.no_grad():
        for chunk in x.split(16):
            net(chunk)
    return [p["kl"] for p in bn.profile()]


def test_batchnorm_profile_zero_on_source_statistics_and_grows_with_shift():
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():                      # momentum=None: running stats = exact average over "source" data
        net.train()
        for _ in range(20):
            net(torch.randn(64, 3, 32, 32))
    net.eval()
    matched = _profile(net, torch.randn(128, 3, 32, 32))
    assert max(matched) < 0.01
    mild = _profile(net, torch.randn(128, 3, 32, 32) * 1.5 + 0.5)
    strong = _profile(net, torch.randn(128, 3, 32, 32) * 3 + 2)
    assert all(m > 0.05 for m in mild) and all(s > m for s, m in zip(strong, mild))
    # only the included samples count: shifted ones masked out -> back to ~0
    x = torch.cat([torch.randn(16, 3, 32, 32), torch.randn(16, 3, 32, 32) * 3 + 2] * 4)
    include = np.tile(np.r_[np.ones(16, bool), np.zeros(16, bool)], 4)
    assert max(_profile(net, x, include)) < 0.02


def test_batchnorm_profile_same_with_batchnorm_folded():
    """The feature pass folds BatchNorm into the convolutions, so the hooks see s*x + t: the profile must not move."""
    from headstart.models.factory import create_backbone
    from headstart.models.bnfold import folded_batchnorm
    from headstart.models.bnshift import BatchNormShift
    model = create_backbone("efficientnet_lite0", 2)[0].eval()
    torch.manual_seed(0)
    x = (torch.rand(24, 3, 64, 64) * 2 - 1) * torch.linspace(0.3, 1.0, 24).view(-1, 1, 1, 1)
    profiles = []
    for fold in (False, True):
        with folded_batchnorm(model, fold), BatchNormShift(model) as bn, torch.no_grad():
            for chunk in x.split(8):
                model(chunk)
        profiles.append([p["kl"] for p in bn.profile()])
    assert len(profiles[0]) == len(profiles[1]) == 49 and max(profiles[0]) > 0.1     # a real, non-zero profile
    assert np.allclose(profiles[1], profiles[0], rtol=2e-3, atol=1e-5)


def test_gaussian_kl_matches_closed_form():
    from headstart.models.bnshift import gaussian_kl
    # KL(N(1, 4) || N(0, 1)) = 0.5 * (log(1/4) + 4 + 1 - 1)
    assert gaussian_kl(1.0, 4.0, 0.0, 1.0, eps=0) == pytest.approx(0.5 * (np.log(0.25) + 4))


def _assessment(knn, raw, modality="image", early=0.1, per_class=50):
    return {"modality": modality, "scores": {"knn": knn, "knn_raw": raw}, "train_per_class_median": per_class,
            "shift": {"batchnorm": {"early": early, "middle": 0.1, "late": 0.1}} if modality == "image" else {}}


def test_verdict_rules():
    from headstart.pipeline.assess import GAIN_HELPS, GAIN_LITTLE, VS_CLASSIC, verdict
    assert verdict(_assessment(0.9, 0.9 - GAIN_HELPS - 1e-6))["vs_classic"]["label"] == VS_CLASSIC[0]
    assert verdict(_assessment(0.6, 0.6 - GAIN_LITTLE + 1e-6))["vs_classic"]["label"] == VS_CLASSIC[2]
    assert verdict(_assessment(0.6, 0.6 - (GAIN_HELPS + GAIN_LITTLE) / 2))["vs_classic"]["label"] == "uncertain"
    assert verdict(_assessment(0.95, 0.5))["try_first"] == "linear-probe"
    deep = verdict(_assessment(0.5, 0.3, early=5.0))
    assert deep["try_first"] == "finetune" and "deeper" in deep["why"]
    assert verdict(_assessment(0.5, 0.3, per_class=5))["try_first"] == "linear-probe"        # few labels
    text = verdict(_assessment(0.6, 0.62, modality="text"))     # frozen text features tie TF-IDF: not "little"
    assert text["vs_classic"]["label"] == "uncertain" and text["try_first"] == "finetune"


def test_two_predictions_word_the_three_kinds_of_set():
    """Constructed cases: the classic baseline wins but scratch does not (the chest X-ray report: raw k-NN 90.9% vs
    frozen 88.0%, ~83 labels per class); scratch is competitive (plenty of labels and a far domain; or inputs so
    simple that raw pixels beat the features by 15 points, as 8x8 digits); transfer wins both (hymenoptera)."""
    from headstart.pipeline.assess import VS_CLASSIC, VS_SCRATCH, verdict
    xray = verdict(_assessment(0.880, 0.909, per_class=83))
    assert xray["vs_classic"]["label"] == VS_CLASSIC[2] and xray["vs_scratch"]["label"] == VS_SCRATCH[0]
    assert "83 training labels per class" in xray["vs_scratch"]["evidence"][0]
    plenty = verdict(_assessment(0.70, 0.78, per_class=3000))
    assert plenty["vs_scratch"]["label"] == VS_SCRATCH[2] and "3000" in plenty["vs_scratch"]["evidence"][0]
    both = verdict(_assessment(0.92, 0.63, per_class=98))          # hymenoptera's numbers
    assert (both["vs_classic"]["label"], both["vs_scratch"]["label"]) == (VS_CLASSIC[0], VS_SCRATCH[0])
    digits = verdict(_assessment(0.735, 0.89, per_class=16))       # digits, 20 per class: raw pixels far ahead
    assert digits["vs_scratch"]["label"] == VS_SCRATCH[2] and "8x8 digits" in digits["vs_scratch"]["evidence"][0]
    assert both["label"].startswith("vs scratch: transfer likely beats scratch; vs classic: ")


def test_predicted_vs_measured_checks_each_prediction_against_its_own_comparison():
    from headstart.core.run_results import RunResults
    from headstart.outputs.report import assessment_lines
    from headstart.pipeline.assess import VS_CLASSIC, VS_SCRATCH, predicted_vs_measured
    a = {"verdict": {"try_first": "linear-probe", "vs_classic": {"label": VS_CLASSIC[2]},
                     "vs_scratch": {"label": VS_SCRATCH[0]}}}
    res = {"strategies": {"linear-probe": {"val_acc": 0.95}, "finetune": {"val_acc": 0.92},
                          "scratch": {"val_acc": 0.6, "provenance": {"kind": "bounded"}}, "classic": {"val_acc": 0.9}},
           "paired_differences": {
               "linear-probe - classic": {"difference": 0.046, "ci": [0.01, 0.08], "significant": True},
               "linear-probe - scratch": {"difference": 0.25, "ci": [0.18, 0.32], "significant": True}}}
    c = predicted_vs_measured(a, res)
    assert c.best_transfer == "linear-probe" and c.try_first_agrees is True
    assert c.rows["vs_scratch"].agrees is True and c.rows["vs_scratch"].bounded is True
    assert c.rows["vs_classic"].agrees is False          # classic was predicted to match; transfer won
    md = "\n".join(assessment_lines(RunResults.from_dict(
        {"assessment": {**a, "check": c.to_dict(), "scores": {}, "backbone": "b", "n_items": 9, "seconds": 1.0,
                        "verdict": {**a["verdict"], "why": "w", "evidence": []}}})))
    assert "| transfer vs the same network from scratch | transfer likely beats scratch | transfer helped" in md
    assert "| transfer vs the classic baseline | the classic baseline may match or beat transfer" in md
    assert "scratch stopped by racing, so a bound" in md and "**no**" in md


def test_assess_cli_ranks_backbones_and_lists_the_ones_that_do_not_load(tmp_path):
    from conftest import make_image_folder
    from test_cli import hs
    data = make_image_folder(tmp_path / "imgs", per_class=10)
    out = tmp_path / "assess"
    r = hs("assess", data, "--backbones", "efficientnet_lite0,no_such_backbone,efficientnet_lite1", "--out", out,
           "--image-size", 64)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((out / "assessment.json").read_text())
    names = [a["backbone"] for a in res["ranking"]]
    assert sorted(names) == ["efficientnet_lite0", "efficientnet_lite1"]
    assert [a["scores"]["logme"] for a in res["ranking"]] == sorted((a["scores"]["logme"] for a in res["ranking"]),
                                                                   reverse=True)
    assert res["skipped"][0]["backbone"] == "no_such_backbone"
    first = res["ranking"][0]
    assert {"logme", "hscore", "leep", "nce", "knn", "knn_raw"} <= set(first["scores"])
    assert first["shift"]["batchnorm"]["layers"] > 10 and first["verdict"]["label"]
    assert "efficientnet_lite1" in r.stdout and "LogME" in r.stdout and "no_such_backbone" in r.stdout
    assert (out / "assessment.md").read_text().startswith("# Assessment")
