"""Tests for mobilenets.engine.optim (param groups, RMSpropTF, schedules) and engine.ema."""

from __future__ import annotations

import copy
import itertools
import math
import warnings

import pytest
import torch
from torch import nn

from mobilenets.config import OptimConfig, SchedConfig
from mobilenets.engine.ema import ModelEMA, unwrap_model
from mobilenets.engine.optim import RMSpropTF, build_optimizer, build_scheduler, lr_at, param_groups


def _small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),  # weight: decay
        nn.BatchNorm2d(4),  # weight, bias: no decay
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),  # weight: decay, bias: no decay
    )


# ----------------------------------------------------------------------------------------------
# Parameter groups
# ----------------------------------------------------------------------------------------------


def test_no_weight_decay_on_norm_and_bias() -> None:
    model = _small_model()
    groups = {g["name"]: g for g in param_groups(model, 0.05)}
    assert len(groups["decay"]["params"]) == 2  # conv.weight, linear.weight
    assert len(groups["no_decay"]["params"]) == 3  # bn.weight, bn.bias, linear.bias
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in groups["decay"]["params"])
    assert all(p.ndim <= 1 for p in groups["no_decay"]["params"])


def test_param_groups_flag_off_and_frozen_params() -> None:
    model = _small_model()
    groups = param_groups(model, 0.05, no_decay_norm_bias=False)
    assert [g["name"] for g in groups] == ["decay"] and len(groups[0]["params"]) == 5
    model[1].requires_grad_(False)  # frozen BN: not in any group
    n = sum(len(g["params"]) for g in param_groups(model, 0.05))
    assert n == 3


def test_model_no_weight_decay_names() -> None:
    class WithNoWD(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _small_model()
            self.pos = nn.Parameter(torch.zeros(1, 4, 2, 2))  # ndim 4 but listed
            self.head = nn.Linear(2, 2)  # listed as a module: covers head.weight too

        def no_weight_decay(self) -> set[str]:
            return {"pos", "head"}

    groups = {g["name"]: g for g in param_groups(WithNoWD(), 0.1)}
    assert len(groups["decay"]["params"]) == 2
    assert len(groups["no_decay"]["params"]) == 3 + 1 + 2


def test_param_groups_through_wrappers() -> None:
    model = _small_model()

    class FakeCompiled(nn.Module):  # torch.compile's OptimizedModule exposes _orig_mod
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self._orig_mod = m

    wrapped = nn.DataParallel(FakeCompiled(model))
    assert unwrap_model(wrapped) is model
    assert [len(g["params"]) for g in param_groups(wrapped, 0.1)] == [2, 3]


# ----------------------------------------------------------------------------------------------
# Optimizers
# ----------------------------------------------------------------------------------------------


def _regression_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1) + 0.3
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1))
    return model, x, y


@pytest.mark.parametrize(
    "cfg",
    [
        OptimConfig(name="sgd", lr=0.05, weight_decay=1e-4),
        OptimConfig(name="rmsprop_tf", lr=0.01, weight_decay=1e-5),
        OptimConfig(name="adamw", lr=0.01),
        OptimConfig(name="sgd", lr=0.05, momentum=0.0, nesterov=True),  # nesterov dropped w/o momentum
    ],
    ids=["sgd", "rmsprop_tf", "adamw", "sgd-no-momentum"],
)
def test_each_optimizer_reduces_loss(cfg: OptimConfig) -> None:
    model, x, y = _regression_problem()
    opt = build_optimizer(model, cfg)
    loss_fn = nn.MSELoss()
    with torch.no_grad():
        initial = loss_fn(model(x), y).item()
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = loss_fn(model(x), y).item()
    assert final < 0.5 * initial, (cfg.name, initial, final)
    assert {g["name"] for g in opt.param_groups} == {"decay", "no_decay"}


def test_build_optimizer_types_and_eps() -> None:
    model = _small_model()
    assert isinstance(build_optimizer(model, OptimConfig(name="sgd")), torch.optim.SGD)
    rms = build_optimizer(model, OptimConfig(name="rmsprop_tf"))
    assert isinstance(rms, RMSpropTF) and rms.defaults["eps"] == 1e-3 and rms.defaults["alpha"] == 0.9
    adamw = build_optimizer(model, OptimConfig(name="adamw", eps=1e-6, betas=(0.8, 0.9)))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["eps"] == 1e-6 and adamw.defaults["betas"] == (0.8, 0.9)


def test_rmsprop_tf_first_step_matches_hand_computation() -> None:
    lr, alpha, eps, mom, wd = 0.1, 0.9, 1e-3, 0.9, 0.01
    p0 = torch.tensor([1.0, -2.0, 0.5])
    g = torch.tensor([0.5, 0.1, -3.0])

    p = nn.Parameter(p0.clone())
    opt = RMSpropTF([p], lr=lr, alpha=alpha, eps=eps, momentum=mom, weight_decay=wd)
    p.grad = g.clone()
    opt.step()

    for i in range(3):
        gi = g[i].item() + wd * p0[i].item()  # coupled weight decay
        sq = alpha * 1.0 + (1 - alpha) * gi * gi  # square average starts at ONE
        buf = mom * 0.0 + lr * gi / math.sqrt(sq + eps)  # eps inside sqrt, lr inside momentum
        assert p[i].item() == pytest.approx(p0[i].item() - buf, rel=1e-6)

    # second step: momentum carries the first update
    p.grad = g.clone()
    buf1 = opt.state[p]["momentum_buffer"].clone()
    sq1 = opt.state[p]["square_avg"].clone()
    before = p.detach().clone()
    opt.step()
    g2 = g + wd * before
    sq2 = alpha * sq1 + (1 - alpha) * g2 * g2
    buf2 = mom * buf1 + lr * g2 / torch.sqrt(sq2 + eps)
    torch.testing.assert_close(p.detach(), before - buf2)


def test_rmsprop_tf_decoupled_decay_and_closure() -> None:
    p = nn.Parameter(torch.tensor([2.0]))
    opt = RMSpropTF([p], lr=0.1, weight_decay=0.5, decoupled_decay=True, momentum=0.0)

    def closure() -> float:
        opt.zero_grad()
        loss = (p * 0.0).sum()  # zero gradient: only the decay acts
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == 0.0
    assert p.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5))


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------

SPE = 17  # steps per epoch of the digits job


def test_warmup_start_and_end() -> None:
    cfg = SchedConfig(name="cosine", warmup_epochs=2.0, warmup_lr_ratio=0.01)
    assert lr_at(cfg, 40, SPE, 0) == pytest.approx(0.01)
    assert lr_at(cfg, 40, SPE, SPE) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way
    assert lr_at(cfg, 40, SPE, 2 * SPE) == pytest.approx(1.0)  # end of warm-up: peak
    ramp = [lr_at(cfg, 40, SPE, s) for s in range(2 * SPE + 1)]
    assert all(b > a for a, b in itertools.pairwise(ramp))


def test_cosine_end_value() -> None:
    cfg = SchedConfig(name="cosine", warmup_epochs=2.0, min_lr_ratio=0.05)
    total = 40 * SPE
    assert lr_at(cfg, 40, SPE, total) == pytest.approx(0.05)
    assert lr_at(cfg, 40, SPE, total - 1) > 0.05  # the last step still trains
    assert lr_at(cfg, 40, SPE, 2 * SPE + (total - 2 * SPE) // 2) == pytest.approx(0.525, abs=2e-3)
    values = [lr_at(cfg, 40, SPE, s) for s in range(2 * SPE, total + 1)]
    assert all(b <= a for a, b in itertools.pairwise(values))


def test_step_decay_at_boundaries() -> None:
    cfg = SchedConfig(name="step", warmup_epochs=0.0, step_size=2.0, gamma=0.973)
    assert lr_at(cfg, 40, SPE, 0) == 1.0
    assert lr_at(cfg, 40, SPE, 2 * SPE - 1) == 1.0  # last step before the boundary
    assert lr_at(cfg, 40, SPE, 2 * SPE) == pytest.approx(0.973)
    assert lr_at(cfg, 40, SPE, 4 * SPE - 1) == pytest.approx(0.973)
    assert lr_at(cfg, 40, SPE, 4 * SPE) == pytest.approx(0.973**2)
    # with warm-up the staircase starts counting after it (torchvision SequentialLR)
    warm = SchedConfig(name="step", warmup_epochs=1.0, step_size=2.0, gamma=0.5)
    assert lr_at(warm, 40, SPE, SPE) == 1.0
    assert lr_at(warm, 40, SPE, 3 * SPE - 1) == 1.0
    assert lr_at(warm, 40, SPE, 3 * SPE) == pytest.approx(0.5)


def test_exponential_per_epoch() -> None:
    cfg = SchedConfig(name="exponential", warmup_epochs=0.0, gamma=0.9)
    for epoch in range(5):
        assert lr_at(cfg, 40, SPE, epoch * SPE) == pytest.approx(0.9**epoch)
    per_epoch = SchedConfig(name="exponential", warmup_epochs=0.0, gamma=0.9, per_step=False)
    assert [lr_at(per_epoch, 40, SPE, e) for e in range(3)] == pytest.approx([1.0, 0.9, 0.81])


def test_constant_and_onecycle() -> None:
    const = SchedConfig(name="constant", warmup_epochs=1.0, warmup_lr_ratio=0.1)
    assert lr_at(const, 10, SPE, 0) == pytest.approx(0.1)
    assert lr_at(const, 10, SPE, 5 * SPE) == 1.0
    one = SchedConfig(name="onecycle", warmup_epochs=0.0, warmup_lr_ratio=0.04, min_lr_ratio=0.0)
    assert lr_at(one, 10, SPE, 0) == pytest.approx(0.04)
    assert lr_at(one, 10, SPE, 3 * SPE) == pytest.approx(1.0)  # 30 % of the run by default
    assert lr_at(one, 10, SPE, 10 * SPE) == pytest.approx(0.0, abs=1e-12)


def test_poly_follows_deeplab() -> None:
    poly = SchedConfig(name="poly", warmup_epochs=0.0, power=0.9)
    for epoch in (0, 3, 7, 9):
        assert lr_at(poly, 10, SPE, epoch * SPE) == pytest.approx((1 - epoch / 10) ** 0.9)
    assert lr_at(poly, 10, SPE, 10 * SPE) == 0.0
    warm = SchedConfig(name="poly", warmup_epochs=2.0, warmup_lr_ratio=0.0, power=1.0, min_lr_ratio=0.05)
    assert lr_at(warm, 10, SPE, SPE) == pytest.approx(0.5)
    assert lr_at(warm, 10, SPE, 6 * SPE) == pytest.approx(0.5)  # halfway through the 8 epochs after warm-up
    assert lr_at(warm, 10, SPE, 10 * SPE) == pytest.approx(0.05)  # floored at min_lr_ratio
    with pytest.raises(ValueError, match="power"):
        SchedConfig(name="poly", power=0.0).validate()


def test_per_epoch_mode_counts_epochs() -> None:
    cfg = SchedConfig(name="cosine", warmup_epochs=2.0, warmup_lr_ratio=0.0, per_step=False)
    assert lr_at(cfg, 10, 999, 0) == 0.0
    assert lr_at(cfg, 10, 999, 1) == pytest.approx(0.5)
    assert lr_at(cfg, 10, 999, 2) == pytest.approx(1.0)
    assert lr_at(cfg, 10, 999, 10) == pytest.approx(0.0, abs=1e-12)


def _opt_and_sched(cfg: SchedConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    model = _small_model()
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=0.1))
    return opt, build_scheduler(opt, cfg, epochs=5, steps_per_epoch=SPE)


def _advance(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, n: int) -> list[float]:
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # no grads: a no-op, but keeps the "optimizer before scheduler" order
        sched.step()
    return lrs


def test_scheduler_follows_lr_at_for_every_group() -> None:
    cfg = SchedConfig(name="cosine", warmup_epochs=1.0)
    opt, sched = _opt_and_sched(cfg)
    lrs = _advance(opt, sched, 5 * SPE)
    assert lrs == pytest.approx([0.1 * lr_at(cfg, 5, SPE, s) for s in range(5 * SPE)])
    assert opt.param_groups[1]["lr"] == opt.param_groups[0]["lr"]


def test_scheduler_state_dict_resume() -> None:
    cfg = SchedConfig(name="cosine", warmup_epochs=1.0)
    opt, sched = _opt_and_sched(cfg)
    _advance(opt, sched, 23)
    opt_state = copy.deepcopy(opt.state_dict())
    sched_state = copy.deepcopy(sched.state_dict())
    expected = _advance(opt, sched, 40)

    opt2, sched2 = _opt_and_sched(cfg)  # fresh run rebuilt from the same config
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = _advance(opt2, sched2, 40)
    assert resumed == expected


# ----------------------------------------------------------------------------------------------
# EMA
# ----------------------------------------------------------------------------------------------


def _perturb(model: nn.Module, amount: float = 1.0) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(amount)


def test_ema_copy_is_frozen_fp32_eval() -> None:
    model = _small_model().to(torch.bfloat16)
    ema = ModelEMA(model)
    assert ema.module is not model and not ema.module.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in ema.module.parameters())
    ema.update(model)  # bf16 -> fp32 works


def test_ema_decay_zero_equals_model() -> None:
    model = _small_model()
    ema = ModelEMA(model, decay=0.0, warmup=False)
    _perturb(model, 0.37)
    ema.update(model)
    for e, m in zip(ema.module.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(e, m)


def test_ema_warmup_effective_decay() -> None:
    model = _small_model()
    ema = ModelEMA(model, decay=0.998, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(8) == pytest.approx(0.5)
    assert ema.decay_at(10**6) == 0.998
    init = [p.detach().clone() for p in model.parameters()]
    _perturb(model, 1.0)
    assert ema.update(model, step=0) == pytest.approx(0.1)
    for e, p0, m in zip(ema.module.parameters(), init, model.parameters()):
        torch.testing.assert_close(e, 0.1 * p0 + 0.9 * m.detach())
    assert ema.updates == 1
    assert ModelEMA(model, decay=0.9, warmup=False).decay_at(0) == 0.9


def test_ema_buffers_copied_not_averaged() -> None:
    model = _small_model()
    ema = ModelEMA(model, decay=0.99, warmup=False)
    model.train()
    model(torch.randn(8, 3, 8, 8) * 5 + 3)  # moves BN running stats
    ema.update(model)
    bn_ema, bn = ema.module[1], model[1]
    torch.testing.assert_close(bn_ema.running_mean, bn.running_mean)
    torch.testing.assert_close(bn_ema.running_var, bn.running_var)
    assert int(bn_ema.num_batches_tracked) == int(bn.num_batches_tracked) == 1
    # ...while parameters are averaged
    model_w = model[0].weight.detach()
    assert torch.allclose(ema.module[0].weight, model_w)  # unchanged weights stay equal
    _perturb(model, 1.0)
    ema.update(model)
    assert not torch.allclose(ema.module[0].weight, model[0].weight.detach())


def test_ema_state_dict_round_trip_and_wrapped_model() -> None:
    model = _small_model()
    ema = ModelEMA(model, decay=0.9)
    for step in range(3):
        _perturb(model, 0.1)
        ema.update(nn.DataParallel(model), step)  # wrapped models are unwrapped
    state = copy.deepcopy(ema.state_dict())

    other = ModelEMA(_small_model(), decay=0.9)
    other.load_state_dict(state)
    assert other.updates == 3
    for a, b in zip(other.module.state_dict().values(), ema.module.state_dict().values()):
        torch.testing.assert_close(a, b)
    # continuing both gives identical results (the counter drives the warm-up decay)
    _perturb(model, 0.1)
    assert ema.update(model) == other.update(model)
    for a, b in zip(other.module.parameters(), ema.module.parameters()):
        torch.testing.assert_close(a, b)


def test_every_configurable_optimizer_and_schedule_exists() -> None:
    """The config's choices (its Literals) and the engine's implementations are one list: each name the
    config accepts builds, and each schedule yields a finite multiplier over a whole run."""
    from typing import get_args

    from mobilenets.config import OptimConfig, OptimizerName, SchedConfig, SchedulerName
    from mobilenets.engine.optim import build_optimizer, lr_at

    model = torch.nn.Linear(4, 2)
    for name in get_args(OptimizerName):
        assert build_optimizer(model, OptimConfig(name=name)) is not None
    for name in get_args(SchedulerName):
        values = [lr_at(SchedConfig(name=name), 4, 3, step) for step in range(13)]
        assert all(math.isfinite(v) and v >= 0 for v in values), (name, values)
