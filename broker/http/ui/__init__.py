"""The dashboard at /ui: server-rendered pages (Jinja2) that the broker serves itself, kept live
by the events feed. docs/dashboard.md tells how it is built and what it costs.

Each page is an open shell holding no data; its parts are fragments (pages.py) that need the
requester token like the JSON listings they mirror, fetched by htmx with the token the browser
keeps in sessionStorage (static/ui.js). Every action (pause, cancel, re-run, delete) is a call
of the JSON API itself.
"""
