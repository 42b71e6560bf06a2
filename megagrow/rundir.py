"""The run directory: ``runs/<name>/{config.yaml, deepspeed.json, metrics.jsonl, tb/, checkpoints/}``."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from megagrow.checkpoint import atomic_write_text, latest_checkpoint
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

    def prepare(self, cfg: Config, ds_config: dict, resume_step: int | None) -> None:
        """Main rank only. Fresh start: clear old outputs. Resume: drop metrics past the checkpoint."""
        self.path.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            for stale in (self.metrics, self.path / "tb", self.checkpoints):
                if stale.exists():
                    print(f"[megagrow] fresh start: removing previous {stale}", flush=True)
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        elif self.metrics.exists():
            kept = [ln for ln in self.metrics.read_text().splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= resume_step]
            atomic_write_text(self.metrics, "".join(ln + "\n" for ln in kept))
        atomic_write_text(self.path / "config.yaml", dump_yaml(cfg))
        atomic_write_text(self.path / "deepspeed.json", json.dumps(ds_config, indent=2) + "\n")
