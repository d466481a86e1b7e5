"""Events out: webhooks and broker export, each reading the store's event log through a cursor."""
