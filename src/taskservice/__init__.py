"""TaskService: a task-management gRPC service with durable storage and resumable watches."""

__version__ = "0.1.0"
