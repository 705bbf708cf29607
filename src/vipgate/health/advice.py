"""Teaching: which log line a failed /livez check calls for, and when. Pure (no I/O, no clock,
no logging): :class:`Teacher` is fed the checks' results and the server's closes with the
caller's ``now``, and returns at most one :class:`Advice` per check; the gate
(``health/gate.py``) owns one and puts its advice in the step, the manager logs it at the
advice's :class:`AdviceLevel`.

The rules it keeps (docs/design.md, "The gate's advice")
---------------------------------------------------------
1. What a failure means: :func:`advice_for` -- a TLS hostname mismatch (the names the
   certificate carries and the setting to use), an untrusted certificate (the CA file to set),
   a 401/403 (an access problem, not the apiserver being down); nothing for plain outages.
2. Once per failure episode and kind: an episode is a run of consecutive failed checks (a
   success ends it); each kind is given at its first occurrence in it, however many checks fail
   the same way.
3. The apiserver's start-up. It begins when vipgate starts and whenever the apiserver's port
   refuses, resets or closes the connection (the process is gone, or new); it ends at the
   first 200, or once the apiserver has answered (any HTTP status) :data:`STARTUP_ANSWERS`
   (3) checks and :data:`STARTUP_SECONDS` (10 s) after its first answer -- both: at the fast
   period the seconds decide, at kube-vip's 5 s grid the third answer comes at 10 s too. A
   kube-apiserver answers anonymous ``/livez`` with 403 for 0.5-1.5 s after it starts (its
   RBAC rules are not loaded yet), then 500 for about a second (post-start hooks such as
   ``poststarthook/rbac/bootstrap-roles`` not done), then 200: about 3 s, well inside 10.
4. During the start-up a 401/403 is not an access problem: no advice. If it persists past the
   start-up, rules 1-2 give the access advice, once per episode (an access problem found while
   vipgate starts is named 10 s after the first answer).
5. During the start-up a 500 is named once, at INFO: the apiserver is starting, with the
   checks its body lists as failed (``[-]NAME failed``; ``ProbeResult.failed_checks``).

Which advice is said, and at which level, by (kind, during the start-up), is the table
``_SAY``. The readiness URL's advice (READINESS_UNREADABLE) is the gate's, once per gate.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from urllib.parse import urlsplit

from vipgate.health.probe import ErrorKind, ProbeResult, suggest_server_name

__all__ = [
    "STARTUP_ANSWERS",
    "STARTUP_SECONDS",
    "Advice",
    "AdviceKind",
    "AdviceLevel",
    "Level",
    "Teacher",
    "advice_for",
]

STARTUP_ANSWERS = 3
"""Rule 3: answers (any HTTP status) after which, with :data:`STARTUP_SECONDS`, the start-up
is over."""

STARTUP_SECONDS = 10.0
"""Rule 3: seconds after the first answer after which, with :data:`STARTUP_ANSWERS`, the
start-up is over."""


class AdviceKind(enum.Enum):
    TLS_HOSTNAME = "tls_hostname"
    TLS_VERIFY = "tls_verify"
    ACCESS_DENIED = "access_denied"
    READINESS_UNREADABLE = "readiness_unreadable"
    STARTING_UP = "starting_up"  # rule 5: a 500 while the apiserver starts


class Level(enum.Enum):
    """How loud the caller says a line: an operator's problem, the route leaving, or what is
    going on (the gate's transitions use WARNING too)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


AdviceLevel = Level


@dataclass(frozen=True, slots=True)
class Advice:
    """A teaching log line: what the failure means and what to do."""

    kind: AdviceKind
    message: str
    level: AdviceLevel = AdviceLevel.ERROR


_K, _L = AdviceKind, AdviceLevel
_GONE = frozenset({ErrorKind.REFUSED, ErrorKind.RESET})  # the port refuses, or closes on us

# (kind, during the apiserver's start-up) -> the level it is said at, or None: not said.
_SAY: Mapping[tuple[AdviceKind, bool], AdviceLevel | None] = MappingProxyType(
    {
        (_K.TLS_HOSTNAME, False): _L.ERROR,  # rule 1 (TLS does not change with a restart)
        (_K.TLS_HOSTNAME, True): _L.ERROR,
        (_K.TLS_VERIFY, False): _L.ERROR,
        (_K.TLS_VERIFY, True): _L.ERROR,
        (_K.ACCESS_DENIED, False): _L.ERROR,  # rule 4: past the start-up
        (_K.ACCESS_DENIED, True): None,  # rule 4: RBAC not loaded yet
        (_K.STARTING_UP, False): None,  # a 500 of a running apiserver: the transition says it
        (_K.STARTING_UP, True): _L.INFO,  # rule 5
    }
)


def advice_for(result: ProbeResult, url: str = "") -> Advice | None:
    """The teaching message a failed result calls for, if any (rule 1; pure)."""
    where = url or "the health-check URL"
    path = (urlsplit(url).path or "/") if url else "/livez"
    if result.error is ErrorKind.TLS_HOSTNAME:
        host = result.verified_name or "the URL's host"
        if result.cert_names:
            listed = ", ".join(result.cert_names)
            msg = (
                f"the apiserver certificate names {listed} but not {host}: set "
                f"control_plane_health_check_server_name={suggest_server_name(result.cert_names)}, "
                f"or use an address the certificate names in {where}"
            )
        else:
            msg = (
                f"the apiserver certificate does not name {host}: set "
                "control_plane_health_check_server_name to a name it carries (kubeadm: "
                f"kubernetes), or use an address the certificate names in {where}"
            )
        return Advice(AdviceKind.TLS_HOSTNAME, msg)
    if result.error is ErrorKind.TLS_VERIFY:
        trust = f"the CA file {result.ca_path}" if result.ca_path else "the system trust store"
        return Advice(
            AdviceKind.TLS_VERIFY,
            f"the apiserver certificate is not trusted by {trust}: set "
            "control_plane_health_check_ca_path to the cluster CA that signed it "
            "(kubeadm: /etc/kubernetes/pki/ca.crt)",
        )
    if result.error is ErrorKind.HTTP_STATUS and result.status in (401, 403):
        return Advice(
            AdviceKind.ACCESS_DENIED,
            f"the apiserver refuses anonymous access to {path} (HTTP {result.status} from "
            f"{where}): this is an access problem, not the apiserver being down; allow "
            f"unauthenticated GET of {path} (kube-apiserver --anonymous-auth=true, kubeadm's "
            "default, and the "
            "system:public-info-viewer ClusterRoleBinding for system:unauthenticated)",
        )
    return None


def starting_up_advice(result: ProbeResult, url: str = "") -> Advice:
    """Rule 5's line: a 500 while the apiserver starts, with the checks its body names."""
    where = url or "the health-check URL"
    if result.failed_checks:
        named = "not passed yet: " + ", ".join(result.failed_checks)
    else:
        named = "no failed check named in its body"
    return Advice(
        AdviceKind.STARTING_UP,
        f"the apiserver is starting: {where} answers HTTP {result.status}, {named}; "
        "the VIP is announced at its first 200",
    )


class Teacher:
    """Rules 2-5 over a stream of checks: ``started(now)`` once, then ``closed(now)`` for each
    close of the idle connection by the server and ``feed(result, now)`` for each check's result
    (the advice to log, or None)."""

    def __init__(self, url: str = "") -> None:
        self.url = url
        self._advised: frozenset[AdviceKind] = frozenset()  # in this failure episode (rule 2)
        self.starting = True  # rule 3: the apiserver's start-up is under way
        self._first_answer: float | None = None  # of this start-up
        self._answers = 0  # of this start-up
        self._named_start = False  # rule 5: this start-up's 500 was named

    def started(self, now: float) -> None:
        """vipgate starts: the apiserver's first answers are its start-up (rule 3)."""
        self._begin_startup()

    def closed(self, now: float) -> None:
        """The server closed the idle keep-alive connection: maybe a new process (rule 3)."""
        self._begin_startup()

    def feed(self, result: ProbeResult, now: float) -> Advice | None:
        """A check ended at ``now``: the advice it calls for, if any (rules 1-5)."""
        if result.ok:
            self._advised = frozenset()  # the episode is over (rule 2)
            self.starting = False  # the first 200 ends the start-up (rule 3)
            return None
        if result.error in _GONE:
            self._begin_startup()
        elif result.status is not None and self.starting:
            if self._first_answer is None:
                self._first_answer = now
            self._answers += 1
            long_enough = now - self._first_answer >= STARTUP_SECONDS
            self.starting = not (self._answers >= STARTUP_ANSWERS and long_enough)
        advice = advice_for(result, self.url)
        if advice is None and result.status == 500 and not self._named_start:
            advice = starting_up_advice(result, self.url)
        if advice is None or advice.kind in self._advised:
            return None
        level = _SAY[advice.kind, self.starting]
        if level is None:
            return None
        if advice.kind is AdviceKind.STARTING_UP:
            self._named_start = True  # once per start-up (rule 5)
        else:
            self._advised = self._advised | {advice.kind}
        return replace(advice, level=level)

    def _begin_startup(self) -> None:
        self.starting = True
        self._first_answer = None
        self._answers = 0
        self._named_start = False
