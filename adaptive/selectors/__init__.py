"""Reads, beside the services that write (adaptive.services): what the API, the dashboard and the admin show.

A selector takes model objects or plain values and returns querysets, rows or small dicts; it
never writes. Querysets come back filtered to one deployment and ordered by an index, with related
numbers annotated rather than loaded, so an entry point can paginate them at a fixed query cost.
"""
