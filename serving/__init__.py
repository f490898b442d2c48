"""Serving: combined ensemble predictions and their uncertainty over HTTP (``/v1`` and ``/v2``)."""
