"""Ray job entry points: thin orchestration of ser_core over Ray tasks, Ray Data and Ray Train."""
