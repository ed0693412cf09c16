"""Reporting: collecting results (results), statistics over seeds (summaries), paired statistics
(paired), tables (tables) and plots (plots). tools/make_tables.py and tools/paired_stats.py are
their commands."""
