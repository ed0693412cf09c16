"""The reference-parity harness and its cases (docs/PARITY.md); tools/check_reference_parity.py runs them."""
