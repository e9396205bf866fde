"""The in-app inbox: its tables (``models``), the one place that writes them
(``store``), user tokens (``tokens``) and engagement (``engagement``)."""
