"""Webhooks: signed POSTs of each event a webhook's owner may see, in order, at least once."""
