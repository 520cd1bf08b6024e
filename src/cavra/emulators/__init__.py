"""Faithful local emulators of every provider, served by ``cavra emulate`` and used by the tests.

The emulators are written from the providers' documentation (``providers.md``) and share no code with the
connectors, in either direction: an emulator built on a connector's own code would repeat its mistakes.
"""
