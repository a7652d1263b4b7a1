"""Past one machine: Kubernetes and KServe manifests for dnx artifacts (``dnx deploy k8s``), and
replicas of ``dnx serve`` / ``dnx triton serve`` behind haproxy on one machine (``make scale-demo``)."""
