"""DVC stage entry points, one module per stage in dvc.yaml's order.

Each module declares ``PARAMS`` (the params.yaml keys it reads, the same as its ``params:`` in
dvc.yaml) and ``run(params, ...)``, which reads its inputs, calls the library and writes its
outputs atomically.
"""
