"""The vipgate network-namespace lab (docs/design.md, "The lab"), shared by tests, benchmarks and
the demo.

Modules:
    netns     Lab: per-run tagged namespaces, veths, bridges, addresses, processes, cleanup
    topology  build_topology(): router + N nodes + client (+ multihop variant, extra routers)
    routers   BirdRouter / FrrRouter / GobgpRouter drivers, Neighbor, RibPath
    apiserver fake kube-apiserver (python -m lab.apiserver) and its control client
    pki       kubeadm-shaped CA and serving certificates
    routemon  timestamped kernel route changes (ip monitor)
    wait      wait_for(): bounded polling
    ping      ICMP echo without a ping binary (python -m lab.ping)
"""
