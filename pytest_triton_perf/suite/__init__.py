"""Suites in YAML: ``triton-perf*.yaml`` files whose tests pytest collects as it collects
Python tests, each running through the ``triton_perf`` fixture.

- :mod:`.kinds`: the kinds of value (check, words, JSON Schema);
- :mod:`.schema`: the table of keys, the JSON Schema made from it;
- :mod:`.loader`: YAML to :class:`~.loader.SuiteTest`, errors with line and column;
- :mod:`.run`: one test's call of ``triton_perf``;
- :mod:`.items`: the pytest collector and items (the only module here importing pytest).
"""
