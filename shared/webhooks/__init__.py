"""Webhooks: callback URLs and the events published to them."""
