"""The use cases and every rule: the service, validation, errors, events and paging."""
