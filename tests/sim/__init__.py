"""A deterministic world simulation: random saga definitions run against random services.

``generate`` draws definitions from every block, ``world`` runs them in a
:class:`~sagas.testing.SagaTestEnv` (the worker's transition and record path) against simulated
services and checks the invariants at quiescence, ``run`` is the command line
(``python -m tests.sim.run --sagas N --seed S [--workers K]``, or ``make simulate``).
"""
