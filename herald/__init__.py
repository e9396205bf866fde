"""Herald's shared contracts: settings, pydantic models, database tables and clients.

Every layer (api, bridge, workflows, activities, workers) imports from here and
never from another layer's internals.
"""
