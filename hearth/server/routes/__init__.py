"""Route modules; each exposes ``add_routes(routes)``. Order matters only for the static root (last)."""
from hearth.server.routes import core, files, frontend, internal, jobs, subgraphs, userdata

ROUTE_MODULES = (core, jobs, internal, files, userdata, subgraphs, frontend)
