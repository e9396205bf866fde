"""One router per resource; handlers parse, call a service and shape the answer."""
