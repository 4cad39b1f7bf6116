"""Talking to Mimecast: authentication, the search client and its response envelope."""
