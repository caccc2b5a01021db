"""The Prefect flows a user runs, schedules and triggers, their config model and the `curate` command."""
