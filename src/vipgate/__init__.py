"""vipgate: health-gated BGP announcer for the Kubernetes control-plane VIP."""

__version__ = "0.1.0"
