"""Development and test tooling: the embedded Temporal dev server, ``herald dev``'s process
supervisor and the local SMTP/Twilio/FCM stand-ins. Installed with the ``[dev]`` extra."""
