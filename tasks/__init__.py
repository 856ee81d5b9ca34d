"""One module per pipeline stage: plain functions, with thin Prefect tasks at the edge."""
