"""Test-only doubles and data generators (imported as ``support.*``: pytest puts tests/ on sys.path through
its rootdir conftest, mypy through mypy_path). Builders that bench/ and the demo share live in launcher/."""
