"""The task queue's contract between the API and the workers: task names, lanes, publishing, Celery's configuration."""
