"""Root conftest: the project's own test run covers tests/ only.

example_repo/ is an example *user* project with its own pytest.ini, run as
`pytest example_repo`; benchmarks/ are scripts, not tests.
"""

collect_ignore = ["example_repo", "benchmarks"]
