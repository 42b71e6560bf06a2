"""What a run says: plain log lines without a terminal, a growth-aware ETA, the stop cause, the whole run's
tokens/s, and a warning for a warmup longer than the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from megagrow.cli import main
from megagrow.config import load_config, warnings_for
from megagrow.metrics import Progress, progress_mode
from megagrow.planner.show import summarize
from megagrow.trainer.eta import CostProfile, eta_seconds, format_seconds
from megagrow.trainer.run_state import StopFlag

GPT = "configs/gpt-tiny.yaml"


def test_progress_is_plain_lines_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert progress_mode("auto", is_tty=False) == "lines" and progress_mode("auto", is_tty=True) == "bar"
    assert progress_mode("on", is_tty=False) == "bar" and progress_mode("off", is_tty=True) == "off"
    p = Progress(200, 0, "lines", main=True)
    p.update(1)
    p.report(20, {"loss": "3.210", "tok/s": "1,234", "eta": "1:05"})
    p.write("step 20: loss 3.2100  val_loss 3.3000")
    p.close()
    err = capsys.readouterr().err.splitlines()
    assert err == ["step 20/200 (10%) | loss 3.210 | tok/s 1,234 | eta 1:05", "step 20: loss 3.2100  val_loss 3.3000"]
    quiet = Progress(200, 0, "off", main=True)
    quiet.report(20, {"loss": "1"})
    Progress(200, 0, "lines", main=False).report(20, {"loss": "1"})  # other ranks print nothing
    assert capsys.readouterr().err == ""


def test_eta_weights_the_remaining_steps_by_their_expected_flops() -> None:
    profile = CostProfile(((0, 50, 1.0), (50, 100, 4.0)), one_off=((50, 20.0),))
    assert profile.cost(40, 60) == 10 * 1.0 + 20.0 + 10 * 4.0
    # 10 small steps took 10 s: the 50 steps left cost 4x as much each, plus the one-off transition work
    assert eta_seconds(profile, 10.0, (40, 50), 50, 100) == pytest.approx(50 * 4.0 + 20.0)
    assert eta_seconds(None, 10.0, (40, 50), 50, 100) == pytest.approx(50.0)  # the plain step rate
    assert eta_seconds(profile, 0.0, (50, 50), 50, 100) is None
    assert (format_seconds(65), format_seconds(3725), format_seconds(None)) == ("1:05", "1:02:05", "?")


def test_eta_of_an_apollo_run_exceeds_the_step_rate_estimate_in_its_small_phases() -> None:
    cfg = load_config("configs/gpt-tiny-apollo.yaml", ["--model.vocab_size=8000"])
    profile = CostProfile.from_summary(summarize(cfg))
    growth_aware = eta_seconds(profile, 10.0, (40, 50), 50, cfg.train.max_steps)
    step_rate = eta_seconds(None, 10.0, (40, 50), 50, cfg.train.max_steps)
    assert growth_aware > 3 * step_rate  # the 1-layer phase (E[depth] 1.8) costs far less per step than the rest


def test_stop_flag_names_the_signal() -> None:
    import signal

    stop = StopFlag()
    try:
        stop._handle(signal.SIGTERM, None)
        assert stop.requested and stop.signal_name == "SIGTERM"
    finally:
        stop.restore()


def test_stop_flag_ignores_a_duplicate_sigterm_but_not_a_later_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import time

    raised: list[int] = []
    monkeypatch.setattr(signal, "raise_signal", raised.append)
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    stop = StopFlag()
    try:
        stop._handle(signal.SIGTERM, None)
        clock[0] += 1.0
        stop._handle(signal.SIGTERM, None)  # the launcher's forwarded copy: still a clean stop
        assert stop.requested and raised == []
        clock[0] += StopFlag.DUPLICATE_S
        stop._handle(signal.SIGTERM, None)  # asked again later: hard stop
        assert raised == [signal.SIGTERM]
    finally:
        stop.restore()
    stop = StopFlag()
    try:
        stop._handle(signal.SIGINT, None)
        stop._handle(signal.SIGINT, None)  # Ctrl-C twice: hard stop at once
        assert raised[-1] == signal.SIGINT
    finally:
        stop.restore()


def test_warmup_longer_than_the_run_is_warned_about() -> None:
    (w,) = warnings_for(load_config(GPT, ["--optim.warmup_steps=100", "--train.max_steps=80"]))
    assert "optim.warmup_steps=100 >= train.max_steps=80" in w
    assert warnings_for(load_config(GPT)) == []


def test_cli_summary_names_the_stop_cause_and_the_whole_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "configs/deit-tiny.yaml", f"--run.out_dir={tmp_path}", "--model.n_layers=2", "--model.hidden=48",
            "--model.n_heads=2", "--model.image_size=16", "--data.synthetic_train_samples=512",
            "--data.micro_batch_size=8", "--data.eval_samples=16", "--train.max_steps=6", "--train.eval_every=0",
            "--logging.log_every=2", "--logging.progress=auto", "--optim.warmup_steps=10", "--train.exit_at_step=4",
            "--logging.tensorboard=false"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "stopped early (train.exit_at_step=4), checkpoint saved; the same command resumes at step 4" in out
    assert "tokens/s" in out and "(whole run)" in out
    assert "warning: optim.warmup_steps=10 >= train.max_steps=6" in err
    assert "step 2/6 (33%) | loss" in err and "| eta " in err  # no terminal under pytest: plain lines
    assert "step 4: stopping (train.exit_at_step=4); writing a checkpoint" in err
