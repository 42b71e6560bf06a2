"""The run directory: ``runs/<name>/{config.yaml, config.history.yaml, deepspeed.json, metrics.jsonl, tb/,
checkpoints/}``. ``config.yaml`` is the config the run started with and is never rewritten on resume; the
changes a resume honours are appended to ``config.history.yaml`` (see :mod:`megagrow.checkpointing.resume`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from megagrow.checkpointing.store import atomic_write_text, latest_checkpoint
from megagrow.config import Config, dump_yaml


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def resume_source(self, resume: str) -> Path | None:
        """The checkpoint to resume from, per ``checkpoint.resume``."""
        if resume == "never":
            return None
        if resume == "auto":
            return latest_checkpoint(self.checkpoints)
        path = Path(resume)
        if (path / "latest").is_file():
            return latest_checkpoint(path)
        if not (path / "meta.json").is_file():
            raise FileNotFoundError(f"checkpoint.resume={resume!r}: not a checkpoint directory (no meta.json)")
        return path

    @property
    def history(self) -> Path:
        return self.path / "config.history.yaml"

    def prepare(self, cfg: Config, ds_config: dict, resume_step: int | None, original: dict | None = None,
                changes: dict | None = None) -> None:
        """Main rank only. Fresh start: clear old outputs, write ``config.yaml``. Resume: drop metrics past the
        checkpoint, keep ``config.yaml`` as it is (``original``, the checkpoint's config, writes it when it is
        missing) and record ``changes`` (a :func:`megagrow.checkpointing.resume.history_entry`) in
        ``config.history.yaml``."""
        self.path.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            aside = self.move_aside()
            if aside is not None:
                print(f"[megagrow] fresh start: the previous outputs of {self.path} (checkpoints, metrics, "
                      f"TensorBoard, config) moved to {aside}; delete it when no longer needed", flush=True)
            atomic_write_text(self.path / "config.yaml", dump_yaml(cfg))
        else:
            if self.metrics.exists():
                kept = [ln for ln in self.metrics.read_text().splitlines()
                        if ln.strip() and json.loads(ln)["step"] <= resume_step]
                atomic_write_text(self.metrics, "".join(ln + "\n" for ln in kept))
            if not (self.path / "config.yaml").exists():
                text = yaml.safe_dump(original, sort_keys=False) if original is not None else dump_yaml(cfg)
                atomic_write_text(self.path / "config.yaml", text)
            self._record(resume_step, changes)
        atomic_write_text(self.path / "deepspeed.json", json.dumps(ds_config, indent=2) + "\n")

    OUTPUTS = ("metrics.jsonl", "tb", "checkpoints", "config.history.yaml", "config.yaml", "deepspeed.json",
               "profile.json", "profile_trace.json")

    def move_aside(self, now: datetime | None = None) -> Path | None:
        """A fresh start (``checkpoint.resume=never``, or nothing to resume) never deletes a run: the previous
        outputs move into a timestamped sibling ``<name>.previous-<UTC time>`` (one rename each, same filesystem).
        Returns it, or None when there was nothing to move (only ``config.yaml``/``deepspeed.json`` of a run that
        never wrote a metric or checkpoint are simply replaced)."""
        present = [self.path / n for n in self.OUTPUTS if (self.path / n).exists()]
        if not any(p.name in ("metrics.jsonl", "tb", "checkpoints", "config.history.yaml") for p in present):
            return None
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.previous-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.previous-{stamp}-{n}")
        aside.mkdir(parents=True)
        for p in present:
            p.rename(aside / p.name)
        return aside

    def _record(self, resume_step: int, entry: dict | None) -> None:
        """Entries from ``resume_step`` on belong to a timeline the resume discards (as the metrics past it)."""
        entries = read_history(self.path)
        kept = [e for e in entries if int(e["step"]) < resume_step]
        if entry and entry.get("changes"):
            kept.append(entry)
        if kept != entries:
            atomic_write_text(self.history, HISTORY_HEADER + (yaml.safe_dump(kept, sort_keys=False) if kept else ""))


HISTORY_HEADER = ("# Changes to this run's config.yaml (the config it started with), in order: each entry\n"
                  "# applies from optimizer step `step` on (the checkpoint it resumed from). Written on resume.\n")


def read_history(run_dir: Path) -> list[dict]:
    """The entries of ``<run_dir>/config.history.yaml`` (empty when there is none)."""
    path = Path(run_dir) / "config.history.yaml"
    if not path.is_file():
        return []
    entries = yaml.safe_load(path.read_text()) or []
    if not isinstance(entries, list) or any(not isinstance(e, dict) or "step" not in e for e in entries):
        raise ValueError(f"{path}: expected a list of entries with 'step' and 'changes'")
    return entries


def current_config(run_dir: Path) -> dict:
    """The run's config as it stands now: ``config.yaml`` with every entry of ``config.history.yaml`` applied."""
    tree = yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}
    for entry in read_history(run_dir):
        for key, change in (entry.get("changes") or {}).items():
            section, _, name = key.partition(".")
            if isinstance(tree.get(section), dict) and name in tree[section]:
                tree[section][name] = change["new"]
    return tree
