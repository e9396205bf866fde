"""Request and response bodies of the REST API, one module per resource (the public
contract, OpenAPI at ``/docs``)."""
