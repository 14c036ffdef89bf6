"""hfci's pytest side: the plugin's hooks, the one session object they share, the model tests.

``plugin`` declares the options and registers one :class:`~hfci.pytest.session.HfciSession` per
pytest process; ``cases`` turns the selection into parametrized cases with their marks;
``measuring`` is the benchmark's measure-and-compare step; ``suite`` holds the checks as tests.
"""
