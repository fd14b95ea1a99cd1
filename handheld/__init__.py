"""The members' handheld (网格通): the server side of the phone app a grid member works with.

A phone is enrolled from the registry (a one-time link binds it to its member as a device of kind
`handheld`) and then signs in with the member's PIN; it speaks the terminal contract of
docs/WIRE_FORMAT.md over HTTPS, as its member's terminal, through the ingest's own chain; photos are
uploaded apart and referred to by hash; what the command center sends to the member's terminal
waits in the phone's outbox until the phone acknowledges it. docs/HANDHELD_API.md is the API."""
