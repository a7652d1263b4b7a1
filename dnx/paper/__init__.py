"""The paper's evidence regenerated from dnx's code: Tables 1 and 2 from the registry
(:mod:`dnx.paper.tables`) and Figure 5's feature-reuse maps for any checkpoint and its Q/DQ ONNX
(:mod:`dnx.paper.reuse`, drawn by :mod:`dnx.paper.plot`)."""
