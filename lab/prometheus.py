"""A Prometheus server in a lab namespace (Debian's prometheus 2.42), for the alerting tests.

It scrapes the given targets and evaluates the given rule files every ``interval`` seconds,
keeps its TSDB in the lab's workdir and serves its API on 127.0.0.1:``port`` inside the
namespace (read with curl in that namespace: no address outside the lab)::

    prom = Prometheus(lab, topo.client_ns, ["192.0.2.11:2112"], [rules_file]).start()
    prom.query('sum(vipgate_prefix_announced)')   # -> [{"metric": {...}, "value": [t, "3"]}]
    prom.alerts()                                 # active alerts: pending and firing

The process is tracked by the lab (stopped by PID with the lab).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.netns import Lab
from lab.wait import wait_for


class Prometheus:
    def __init__(
        self,
        lab: Lab,
        ns: str,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        *,
        interval: float = 1.0,
        port: int = 9090,
        job: str = "vipgate",
        name: str = "prometheus",
    ) -> None:
        self.lab = lab
        self.ns = ns
        self.targets = list(targets)
        self.rule_files = [Path(p) for p in rule_files]
        self.interval = interval
        self.port = port
        self.job = job
        self.name = name
        self.dir = lab.workdir / name
        self.proc: subprocess.Popen[Any] | None = None

    def config(self) -> dict[str, Any]:
        every = f"{int(self.interval * 1000)}ms"
        return {
            "global": {
                "scrape_interval": every,
                "scrape_timeout": every,
                "evaluation_interval": every,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": self.job, "static_configs": [{"targets": self.targets}]}
            ],
        }

    def start(self, timeout: float = 30.0) -> Prometheus:
        """Write the configuration, start the server and wait until it is ready."""
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.proc = self.lab.popen(
            self.ns,
            [
                "prometheus",
                f"--config.file={conf}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            log_name=self.name,
        )
        wait_for(
            self._ready,
            timeout,
            0.2,
            what="prometheus ready",
            describe=lambda: self.lab.read_log(self.name)[-2000:],
        )
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.lab.read_log(self.name)[-2000:]}")
        cp = self._curl("/-/ready", check=False)
        return cp.returncode == 0

    def _curl(
        self, path: str, params: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        args = ["curl", "-sS", "--fail", "--max-time", "5", "-G"]
        for k, v in (params or {}).items():
            args += ["--data-urlencode", f"{k}={v}"]
        args.append(f"http://127.0.0.1:{self.port}{path}")
        return self.lab.run(self.ns, args, check=check, timeout=15)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer (AssertionError otherwise)."""
        cp = self._curl(f"/api/v1/{path}", params, check=False)
        assert cp.returncode == 0, f"{path} {params}: {cp.stderr.strip()} {cp.stdout[:500]}"
        doc = json.loads(cp.stdout)
        assert doc.get("status") == "success", doc
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (or [] when empty)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        """Active alerts (state ``pending`` or ``firing``), those named ``name`` if given."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return [a for a in alerts if name is None or a["labels"].get("alertname") == name]

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)
