"""Herald's shared library: settings, contracts, database, Temporal client and search
attributes, messaging, templating, observability, the circuit breaker and the submission
path.

Every layer (api, bridge, workflows, activities, workers, the CLI) imports from here;
this package imports from none of them.
"""
