"""Running and serving artifacts. Inside, the layers show (docs/architecture.md): ``backends/`` (one Runner
per engine, imports only the core), ``tensorrt/`` (the engine builder, a producer), and the deployment
modules here (artifact, selection, classifier, batching), ``serve/`` and ``deploy/`` on top."""
