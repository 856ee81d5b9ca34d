"""Data contracts: ODCS v3 contracts read and compiled into rules (`odcs`, `compiler`, `rules`),
checked with Great Expectations (`gx`, `check`), and their results kept as files and Data Docs
(`results`)."""
