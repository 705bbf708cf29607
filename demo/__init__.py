"""The vipgate demo: a three-node lab narrated live (``./scripts/demo.sh``).

- :mod:`demo.run` -- the scenario and its narration (``python -m demo.run [--short]``).
- :mod:`demo.routewatch` -- polls the router's kernel route for the VIP and records each change.
- :mod:`demo.netns_io` -- sockets and netlink inside a lab namespace from this process (setns in
  a short-lived thread), used to read the router's route and a node's metrics.
- :mod:`demo.report` -- per-phase numbers, the summary table and the expectations (pure).
- :mod:`demo.timeline` -- the timeline picture (matplotlib, Agg).
"""
