"""Stage logic: plain functions over Arrow tables, with thin Prefect task wrappers in tasks/stages.py."""
