"""The vipgate demo: a three-node lab narrated live (``./scripts/demo.sh``).

- :mod:`demo.run` -- the scenario and its narration (``python -m demo.run [--short]``).
- :mod:`demo.netns_io` -- sockets inside a lab namespace from this process (setns in a
  short-lived thread), used to read a node's metrics.
- :mod:`demo.report` -- per-phase numbers, the summary table and the expectations (pure).
- :mod:`demo.timeline` -- the timeline picture (matplotlib, Agg).

The router's kernel route for the VIP is recorded by :class:`lab.routemon.RouteWatch`.
"""
