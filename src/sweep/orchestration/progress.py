"""Sweep progress: a live panel on a terminal (rich), plain timestamped log lines otherwise."""

from __future__ import annotations

import sys
import time

from sweep.orchestration.study import INFEASIBLE


class Progress:
    def __init__(self, mode: str, n_trials: int, study: str, objectives: list[str]):
        self.live_mode = mode == "rich" or (mode == "auto" and sys.stdout.isatty())
        self.n_trials = n_trials
        self.study = study
        self.objectives = objectives
        self.t0 = time.time()
        self.best: str = "-"
        self.best_value: float | None = None
        self.events: list[str] = []
        self._live = None
        self._counts: dict = {}
        self._running = 0
        self._done_at_start = 0

    # -- lifecycle
    def start(self, counts: dict) -> None:
        self._done_at_start = counts.get("finished", 0)
        self._counts = counts
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self._render(), refresh_per_second=2, transient=False)
            self._live.start()
        else:
            self._print(f"study {self.study}: {counts.get('finished', 0)}/{self.n_trials} finished before this run; objectives {', '.join(self.objectives)}")

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()

    # -- feed
    def event(self, number: int, kind: str, detail: str) -> None:
        line = f"{'trial ' + format(number, '>4') if number >= 0 else 'baseline  '} {kind:<8} {detail}"
        self.events = (self.events + [line])[-8:]
        if kind in ("complete",):
            try:
                first = detail.split()[0]
                value = float(first.split("=")[1])
                from sweep import metrics

                better = metrics.direction(self.objectives[0]).value == "max"
                if self.best_value is None or (value > self.best_value if better else value < self.best_value):
                    self.best_value, self.best = value, f"trial {number}: {first}"
            except (IndexError, ValueError):
                pass
        if self._live is None:
            self._print(line)
        else:
            self._live.update(self._render())

    def finished(self, counts: dict, running: int) -> None:
        """After a trial ended: the counts line (plain mode; the live panel shows it anyway)."""
        self._counts, self._running = counts, running
        if self._live is None:
            self._print(self._status_line())

    def message(self, text: str) -> None:
        if self._live is None:
            self._print(text)
        else:
            self.events = (self.events + [text])[-8:]
            self._live.update(self._render())

    def update(self, counts: dict, running: int) -> None:
        self._counts, self._running = counts, running
        if self._live is not None:
            self._live.update(self._render())

    # -- rendering
    def eta_s(self) -> float | None:
        done = self._counts.get("finished", 0) - self._done_at_start
        if done <= 0:
            return None
        rate = (time.time() - self.t0) / done
        return rate * max(0, self.n_trials - self._counts.get("finished", 0))

    def _status_line(self) -> str:
        c = self._counts
        eta = self.eta_s()
        ruled_out = f", ruled out {c[INFEASIBLE]}" if c.get(INFEASIBLE) else ""
        return (f"{c.get('finished', 0)}/{self.n_trials} done (complete {c.get('COMPLETE', 0)}, pruned {c.get('PRUNED', 0)}"
                f"{ruled_out}), "
                f"running {self._running}, failed {c.get('FAIL', 0)} | best {self.best} | "
                f"elapsed {time.time() - self.t0:.0f}s, ETA {'-' if eta is None else f'{eta:.0f}s'}")

    def _render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        return Panel(Group(Text(self._status_line(), style="bold"), *[Text(e) for e in self.events]), title=f"lorasweep: {self.study}")

    def _print(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", flush=True)
