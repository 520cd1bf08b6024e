"""A twelfth provider that exists only in the tests: the proof that docs/connectors/adding-a-provider.md is
enough. ``connector.py`` and ``emulator.py`` are written as the guide says; ``test_twelfth.py`` registers
the spec (``registered(SPEC)``, undone after each test) and the shared kit (test_kit_contract.py,
test_shared_kit.py) runs it like every built-in provider."""
