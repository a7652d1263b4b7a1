"""Small ONNX graph passes and summaries."""

from __future__ import annotations

from collections import Counter


def remove_identities(model_proto) -> int:
    """Drop Identity nodes by rewiring their consumers to their input; returns how many.

    The TorchScript exporter routes every shared weight through an Identity (245 in densenet121);
    they cost nothing at run time but clutter every graph walk and inspect report.
    """
    graph = model_proto.graph
    outputs = {o.name for o in graph.output}
    rename = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not rename:
        return 0

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    del graph.node[:]
    graph.node.extend(keep)
    return len(rename)


def op_counts(model_proto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model_proto.graph.node).most_common())
