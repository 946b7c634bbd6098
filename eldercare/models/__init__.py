"""Machine-learning models (issue 9 part B, scikit-learn). Nothing here yet: the wire
protocol moved to :mod:`eldercare.protocol` and the registry's shapes to
:mod:`eldercare.registry.schemas`. ``alerts`` never imports this package.
"""
